# Copyright (c) mmpetl contributors. All rights reserved.
"""The bottleneck adapter shared by AdaptFormer (a branch parallel to the
MLP) and the Houlsby and Pfeiffer adapters (after the attention and / or the
MLP), and the wrapper base class that places it."""
import math
from typing import Optional, Tuple

import torch
from mmcv.cnn import build_activation_layer
from torch import Tensor, nn

from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..nonfoldable import ParallelSite, SequentialSite
from ..petl import PETLModule

#: Initialisations of the two projections (as OSU-MLB/PETL_Vision's
#: ``init_weight``): ``'lora'``: down kaiming-uniform (``a = sqrt(5)``), up
#: and both biases zero, so the adapter starts as zero (AdaptFormer's
#: reference); ``'xavier'``: both weights xavier-uniform, biases N(0, 1e-6)
#: (PETL_Vision's Houlsby and Pfeiffer adapters).
ADAPTER_INITS = ('lora', 'xavier')


class BottleneckAdapter(PETLModule):
    r"""A bottleneck MLP: down-projection, non-linearity, dropout,
    up-projection, scale.

    .. math::
        f(x) = s \cdot W_{up}\,\mathrm{drop}(\sigma(W_{down} x + b_{down}))
               + s\,b_{up}

    and, with ``residual``, ``x + f(x)`` (a sequential adapter keeps its own
    skip connection, as Houlsby et al. and PETL_Vision's
    ``add_residual=True``).

    Args:
        in_features (int): ``d_in``.
        bottleneck (int): ``r``, the hidden width.
        out_features (int, optional): ``d_out``. Defaults to ``d_in``;
            ``residual`` needs ``d_out = d_in``.
        scale (float): ``s``.
        dropout (float): Dropout after the non-linearity.
        act_cfg (dict): The non-linearity ``sigma``.
        init (str): One of :data:`ADAPTER_INITS`.
        residual (bool): Return ``x + f(x)``.

    Shapes:
        input: (..., d_in) -> output: (..., d_out). Parameters:
        ``r (d_in + 1) + d_out (r + 1)``.
    """

    def __init__(self,
                 in_features: int,
                 bottleneck: int,
                 out_features: Optional[int] = None,
                 scale: float = 1.,
                 dropout: float = 0.1,
                 act_cfg: dict = dict(type='ReLU'),
                 init: str = 'lora',
                 residual: bool = False):
        super().__init__()
        out_features = out_features or in_features
        if bottleneck < 1:
            raise ValueError(f'adapter bottleneck must be >= 1, not '
                             f'{bottleneck}')
        if init not in ADAPTER_INITS:
            raise ValueError(f'adapter init must be one of {ADAPTER_INITS}, '
                             f'not {init!r}')
        if residual and out_features != in_features:
            raise ValueError(f'a residual adapter needs equal widths, not '
                             f'{in_features} -> {out_features}')
        self.scale = scale
        self.residual = residual
        self.down = nn.Linear(in_features, bottleneck)
        self.act = build_activation_layer(dict(act_cfg))
        self.dropout = nn.Dropout(dropout)
        self.up = nn.Linear(bottleneck, out_features)
        self._init(init)

    @torch.no_grad()
    def _init(self, init: str) -> None:
        if init == 'lora':
            nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.bias)
        else:
            nn.init.xavier_uniform_(self.down.weight)
            nn.init.xavier_uniform_(self.up.weight)
            nn.init.normal_(self.down.bias, std=1e-6)
            nn.init.normal_(self.up.bias, std=1e-6)

    def forward(self, x: Tensor) -> Tensor:
        out = self.up(self.dropout(self.act(self.down(x)))) * self.scale
        return x + out if self.residual else out

    def extra_repr(self) -> str:
        return f'scale={self.scale}, residual={self.residual}'


class BottleneckAdapterBackbone(AdapterBackbone):
    """Base of the wrappers that place a :class:`BottleneckAdapter` per
    site, beside the site's module (``placement = 'parallel'``:
    :class:`~mmpetl.models.ParallelSite`) or after it (``'sequential'``:
    :class:`~mmpetl.models.SequentialSite`, the adapter with its own skip
    connection). Non-linear, so no site folds: each says why in one line
    naming the method (:attr:`method`, :attr:`where`).

    A method is a subclass that sets ``default_sites``, ``placement``,
    ``method``, ``where`` and its defaults.

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        bottleneck (int): The adapters' hidden width.
        scale (float): ``s``.
        dropout (float): Dropout after the non-linearity.
        act_cfg (dict): The non-linearity.
        init (str): One of :data:`ADAPTER_INITS`.
        settings (dict, optional): A subclass's own arguments (see
            :class:`~mmpetl.models.FrozenBackbone`).
        **kwargs: ``sites``, ``targets``, ``check_input_shape``,
            ``save_frozen``, ``init_cfg`` of :class:`AdapterBackbone`.
    """

    site_form = 'module'
    requires_default_sites = True
    #: ``'parallel'`` or ``'sequential'``.
    placement: str = 'sequential'
    #: The method's name, in the sites' one-line reason.
    method: str = ''
    #: Where the adapters sit, in that reason.
    where: str = ''
    default_sites: Tuple[str, ...] = ()

    def __init__(self,
                 backbone: BackboneArg,
                 bottleneck: int,
                 scale: float,
                 dropout: float,
                 act_cfg: dict,
                 init: str,
                 settings: Optional[dict] = None,
                 **kwargs):
        super().__init__(
            backbone,
            settings=dict(
                settings or {},
                bottleneck=bottleneck,
                scale=scale,
                dropout=dropout,
                act_cfg=dict(act_cfg),
                adapter_init=init),
            **kwargs)

    @property
    def site_type(self) -> type:
        return ParallelSite if self.placement == 'parallel' \
            else SequentialSite

    def nonfoldable_reason(self, site: AttachSite) -> str:
        return (f"{self.method}'s adapter is a non-linear "
                f"({self.act_cfg['type']}) bottleneck {self.where}: it does "
                'not fold into the stock backbone; deploy the adapter '
                'checkpoint with its mmpetl config')

    def build_adapter(self, site: AttachSite) -> BottleneckAdapter:
        """The site's adapter; a convolution is refused (its channels are
        not the last dimension the adapter's linears mix)."""
        module = self.backbone.get_submodule(site.path)
        if isinstance(module, nn.modules.conv._ConvNd):
            raise ValueError(
                f'a bottleneck adapter mixes the last dimension, and '
                f'{type(module).__name__} keeps its channels first: build the '
                'backbone with linear layers there (ConvNeXt: '
                'linear_pw_conv=True) or leave the kind out of sites=')
        parallel = self.placement == 'parallel'
        return BottleneckAdapter(
            site.in_features if parallel else site.out_features,
            self.bottleneck,
            site.out_features,
            scale=self.scale,
            dropout=self.dropout,
            act_cfg=self.act_cfg,
            init=self.adapter_init,
            residual=not parallel)
