# Copyright (c) mmpetl contributors. All rights reserved.
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..attach_sites import DEFAULT_SITES, find_attach_sites
from ..mergeable_adapter import MergeableAdapter, add_up_projection
from ..petl import AdaptedSite, PETLModule

#: Where ARC's FFN adapter sits in a Swin block (see :class:`ARCBackbone`).
SWIN_FFN_PLACEMENTS = ('foldable', 'reference')


class SharedProjection(PETLModule):
    """The down-projection ``D`` (d x h) that ARC shares between layers.

    Xavier-uniform at init. Owned by the backbone wrapper, used by every
    :class:`ARCAdapter` of its share group.
    """

    def __init__(self, in_features: int, hidden_dim: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, hidden_dim))
        nn.init.xavier_uniform_(self.weight)


class ARCAdapter(MergeableAdapter):
    r"""ARC: Adapter Re-Composing, one site's adapter.

    `Efficient Adaptation of Large Vision Transformer via Adapter
    Re-Composing <https://arxiv.org/abs/2310.06234>`_ (Dong et al.,
    NeurIPS 2023).

    .. math::
        a(x) = x + \mathrm{drop}(x D)\,\mathrm{diag}(\lambda)\,D^T + b

    ``D`` (d x h) is shared by all adapters of a share group (one for the
    attention sites, one for the FFN sites; per stage in Swin) and reused
    transposed as the up-projection; only ``lambda`` (h) and ``b`` (d) belong
    to the site. The map is linear, so it folds into the next linear:
    ``M = I + D diag(lambda) D^T`` (symmetric), ``m = b``.

    The forward adds ``h D^T + b`` to ``x`` in one GEMM
    (:func:`add_up_projection`), with ``h = drop(x D) diag(lambda)``.

    Init: ``b = 0`` and ``lambda = 0``, so the adapter is the identity at
    init. The ARC reference code instead initialises the FFN sites' lambda
    xavier-uniform; ``scale_init='xavier_uniform'`` reproduces that.

    Args:
        projection (SharedProjection): The shared ``D``. Held as a plain
            reference, not a submodule: its owner saves it once.
        dropout (float): Dropout on the hidden ``h`` units. Defaults to 0.1.
        scale_init (str): ``'zeros'`` or ``'xavier_uniform'`` for ``lambda``.
        bias (bool): Whether to learn ``b``. Defaults to True. Without it
            ``m = 0``: for sites that take no shift (Swin V2's attention), a
            deviation from the paper's adapter.

    Shapes:
        input: (..., d) -> output: (..., d).
    """

    def __init__(self,
                 projection: SharedProjection,
                 dropout: float = 0.1,
                 scale_init: str = 'zeros',
                 bias: bool = True):
        super().__init__()
        in_features, hidden_dim = projection.weight.shape
        self.in_features = in_features
        self.has_shift = bias
        # A list hides the shared module from this adapter's state dict and
        # parameters, so the wrapper owns and saves it exactly once.
        self._projection = [projection]
        self.dropout = nn.Dropout(dropout)
        self.scale = nn.Parameter(torch.empty(hidden_dim))
        self.bias = nn.Parameter(torch.zeros(in_features)) if bias else None
        if scale_init == 'zeros':
            nn.init.zeros_(self.scale)
        elif scale_init == 'xavier_uniform':
            nn.init.xavier_uniform_(self.scale.view(1, -1))
        else:
            raise ValueError("scale_init must be 'zeros' or "
                             f"'xavier_uniform', not {scale_init!r}")

    @property
    def projection(self) -> Tensor:
        """The shared ``D``, shape (d, h)."""
        return self._projection[0].weight

    def forward(self, x: Tensor) -> Tensor:
        proj = self.projection
        hidden = self.dropout(x @ proj) * self.scale
        return add_up_projection(x, hidden, proj, self.bias)

    def low_rank(self) -> Tuple[Tensor, Tensor, Tensor]:
        proj = self.projection.double()
        shift = (proj.new_zeros(self.in_features)
                 if self.bias is None else self.bias.double())
        return proj * self.scale.double(), proj, shift


class ResidualStreamFFN(AdaptedSite):
    r"""A Swin block's ``norm2`` and FFN with ARC's adapter on the residual
    stream before ``norm2``, as the ARC reference code places it in Swin
    (``Model/ARC_swin_b.py``)::

        x' = a(x)
        out = x' + FFN(norm2(x'))

    The block's own ``norm2`` is replaced by ``nn.Identity`` and this module
    replaces its ``ffn``, so the block calls ``ffn(x, identity=x)`` with the
    residual stream ``x`` (the ``identity`` it passes is that same tensor and
    is replaced by ``a(x)``). The adapter changes the skip path as well as
    the FFN's input, so it cannot be folded into a linear: merging refuses
    a model holding one.

    Args:
        norm (nn.Module): The block's ``norm2``.
        ffn (nn.Module): The block's FFN (``forward(x, identity=None)``).
        adapter (MergeableAdapter): The site's adapter.

    Shapes:
        input: (B, L, C) -> output: (B, L, C).
    """

    fold_form = 'not mergeable'

    def __init__(self, norm: nn.Module, ffn: nn.Module,
                 adapter: MergeableAdapter):
        super().__init__()
        self.norm = norm
        self.ffn = ffn
        self.adapter = adapter

    def forward(self, x: Tensor, identity: Optional[Tensor] = None) -> Tensor:
        x = self.adapter(x)
        return self.ffn(self.norm(x), identity=x)

    def not_mergeable_reason(self) -> str:
        return ("ARC's reference Swin placement (swin_ffn_placement="
                "'reference') puts the FFN adapter on the residual stream "
                'before norm2, where it also changes the skip path, so it '
                "cannot be folded into a linear; train with "
                "swin_ffn_placement='foldable' (the default) to merge")

    def stock_module(self) -> nn.Module:
        raise ValueError(self.not_mergeable_reason())

    def merged(self) -> nn.Module:
        raise ValueError(self.not_mergeable_reason())

    def describe_fold(self) -> str:
        return 'residual stream before norm2'


@MODELS.register_module()
class ARCBackbone(AdapterBackbone):
    """A frozen backbone with :class:`ARCAdapter` in front of its target
    linears, one :class:`SharedProjection` per share group.

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        hidden_dim (int): ``h``. Defaults to 50 (the paper's).
        dropout (float): See :class:`ARCAdapter`. Defaults to 0.1.
        attn_scale_init (str): ``lambda`` init of attention sites.
            Defaults to ``'zeros'`` (the paper's).
        ffn_scale_init (str): ``lambda`` init of FFN sites. Defaults to
            ``'zeros'`` (identity at init); the reference code uses
            ``'xavier_uniform'``.
        swin_ffn_placement (str): Where the FFN adapter sits in a Swin
            block. ``'foldable'`` (default): after ``norm2``, in front of
            fc1, where it folds into fc1. ``'reference'``: on the residual
            stream before ``norm2``, as in the ARC reference code
            (:class:`ResidualStreamFFN`); it cannot be merged. Only for the
            Swin backbones of the attach-site table.
        **kwargs: ``sites``, ``targets``, ``save_frozen``, ``init_cfg`` of
            :class:`AdapterBackbone`.
    """

    def __init__(self,
                 backbone: BackboneArg,
                 hidden_dim: int = 50,
                 dropout: float = 0.1,
                 attn_scale_init: str = 'zeros',
                 ffn_scale_init: str = 'zeros',
                 swin_ffn_placement: str = 'foldable',
                 **kwargs):
        if swin_ffn_placement not in SWIN_FFN_PLACEMENTS:
            raise ValueError(f'swin_ffn_placement must be one of '
                             f'{SWIN_FFN_PLACEMENTS}, not '
                             f'{swin_ffn_placement!r}')
        super().__init__(
            backbone,
            settings=dict(
                hidden_dim=hidden_dim,
                dropout=dropout,
                scale_inits=dict(attn=attn_scale_init, ffn=ffn_scale_init),
                swin_ffn_placement=swin_ffn_placement),
            **kwargs)

    def find_sites(self) -> List[AttachSite]:
        """The table's sites; with ``swin_ffn_placement='reference'``, the
        FFN sites are the Swin blocks' ``ffn`` modules instead (each
        wrapped, with its block's ``norm2``, by a
        :class:`ResidualStreamFFN`), listed after the others."""
        kinds = DEFAULT_SITES if self.sites is None else self.sites
        if self.swin_ffn_placement == 'foldable' or 'ffn' not in kinds:
            return super().find_sites()
        name = type(self.backbone).__name__
        if self.targets is not None or name != 'SwinTransformer':
            raise ValueError(
                "swin_ffn_placement='reference' applies to the Swin "
                f'backbones of the attach-site table, not {name}' +
                (' with targets' if self.targets is not None else ''))
        others = tuple(kind for kind in kinds if kind != 'ffn')
        sites = find_attach_sites(
            self.backbone, others, form=self.site_form,
            method=type(self).__name__) if others else []
        for site in find_attach_sites(self.backbone, ('ffn', )):
            block = site.path.split('.ffn.')[0]
            sites.append(AttachSite(f'{block}.ffn', site.kind,
                                    site.share_group, site.in_features,
                                    fold_target=None))
        return sites

    def build_shared(self, sites: List[AttachSite]) -> None:
        """One :class:`SharedProjection` per share group."""
        self.shared_projections = nn.ModuleDict()
        for site in sites:
            if site.share_group not in self.shared_projections:
                self.shared_projections[site.share_group] = SharedProjection(
                    site.in_features, self.hidden_dim)
            projection = self.shared_projections[site.share_group]
            if projection.weight.shape[0] != site.in_features:
                raise ValueError(
                    f'ARC share group {site.share_group!r} mixes input sizes '
                    f'{projection.weight.shape[0]} and {site.in_features} '
                    f'(at {site.path}); give the sites distinct share groups')

    def build_adapter(self, site: AttachSite) -> ARCAdapter:
        return ARCAdapter(
            self.shared_projections[site.share_group],
            dropout=self.dropout,
            scale_init=self.scale_inits.get(site.kind, 'zeros'),
            bias=site.shift)

    def wrap_site(self, site: AttachSite, module: nn.Module,
                  adapter: ARCAdapter) -> AdaptedSite:
        if self.swin_ffn_placement == 'foldable' or site.kind != 'ffn':
            return super().wrap_site(site, module, adapter)
        block = self.backbone.get_submodule(site.path.rpartition('.')[0])
        norm, block.norm2 = block.norm2, nn.Identity()
        return ResidualStreamFFN(norm, module, adapter)
