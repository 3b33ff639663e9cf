# Copyright (c) mmpetl contributors. All rights reserved.
from typing import Sequence

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..nonfoldable import NonFoldableSite
from ..petl import PETLModule


class MultiScaleDepthwise(nn.Module):
    r"""Mona's multi-cognitive convolutions on a feature map ``z``:

    .. math::
        z' = z + \tfrac13(\mathrm{DW}_3 z + \mathrm{DW}_5 z + \mathrm{DW}_7 z),
        \qquad z'' = z' + P z'

    (depthwise ``k x k`` convolutions, ``P`` a 1x1 convolution).
    """

    def __init__(self, channels: int):
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(channels, channels, k, padding=k // 2, groups=channels)
            for k in (3, 5, 7))
        self.projector = nn.Conv2d(channels, channels, 1)

    def forward(self, z: Tensor) -> Tensor:
        z = z + sum(conv(z) for conv in self.convs) / 3.
        return z + self.projector(z)


class Mona(PETLModule):
    r"""One Mona adapter on a Swin block's residual stream.

    .. math::
        m(x) = x + W_2\,\mathrm{drop}(\mathrm{GELU}(\mathrm{MS}(
               W_1 (\gamma \odot \mathrm{LN}(x) + \gamma_x \odot x)
               + b_1))) + b_2

    with ``MS`` :class:`MultiScaleDepthwise` on the tokens laid out on the
    block's ``H x W`` grid, as Leiyi-Hu/mona's ``Mona`` (bottleneck 64,
    ``gamma = 1e-6``, ``gamma_x = 1``, dropout 0.1, PyTorch's default init
    of the projections and convolutions: the adapter is not the identity at
    init).

    Shapes:
        ``x``: (B, H W, d) -> (B, H W, d). Parameters: ``133 d + 9,728``
        (``r = 64``).
    """

    def __init__(self, embed_dims: int, bottleneck: int = 64,
                 dropout: float = 0.1):
        super().__init__()
        self.norm = nn.LayerNorm(embed_dims)
        self.gamma = nn.Parameter(torch.full((embed_dims, ), 1e-6))
        self.gammax = nn.Parameter(torch.full((embed_dims, ), 1.))
        self.project1 = nn.Linear(embed_dims, bottleneck)
        self.convs = MultiScaleDepthwise(bottleneck)
        self.dropout = nn.Dropout(dropout)
        self.project2 = nn.Linear(bottleneck, embed_dims)

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:
        batch, length, _ = x.shape
        height, width = hw_shape
        z = self.project1(self.norm(x) * self.gamma + x * self.gammax)
        z = z.transpose(1, 2).reshape(batch, -1, height, width)
        z = self.convs(z).flatten(2).transpose(1, 2)
        return x + self.project2(self.dropout(F.gelu(z)))


class MonaPair(PETLModule):
    """The two Mona adapters of one Swin block: ``after='attn'`` (after the
    attention's residual add) and ``after='ffn'`` (after the FFN's)."""

    def __init__(self, embed_dims: int, bottleneck: int, dropout: float):
        super().__init__()
        self.attn = Mona(embed_dims, bottleneck, dropout)
        self.ffn = Mona(embed_dims, bottleneck, dropout)

    def forward(self, x: Tensor, hw_shape: Sequence[int],
                after: str) -> Tensor:
        return getattr(self, after)(x, hw_shape)


class MonaBlockSite(NonFoldableSite):
    """A Swin block (mmpretrain, mmseg, mmdet: pre-norm, ``forward(x,
    hw_shape)``) with Mona after each residual add::

        x = m_a(x + attn(norm1(x), hw))
        x = m_f(ffn(norm2(x), identity=x))       # ffn adds its identity

    It runs the block's own modules in the block's order (with its
    ``with_cp``); the test proves that with zero Mona outputs it is the
    stock block, shifted windows and padding included.
    """

    adapter: MonaPair

    def forward(self, x: Tensor, hw_shape: Sequence[int]) -> Tensor:

        def inner(x):
            x = x + self.attn(self.norm1(x), hw_shape)
            x = self.adapter(x, hw_shape, 'attn')
            x = self.ffn(self.norm2(x), identity=x)
            return self.adapter(x, hw_shape, 'ffn')

        if getattr(self.module, 'with_cp', False) and x.requires_grad:
            return cp.checkpoint(inner, x)
        return inner(x)


@MODELS.register_module()
class MonaBackbone(AdapterBackbone):
    r"""Mona: multi-cognitive visual adapters after the attention and the
    MLP of every Swin block.

    `Mona: Multi-cognitive Visual Adapter
    <https://arxiv.org/abs/2311.15010>`_ (Yin et al., CVPR 2025), reference
    code Leiyi-Hu/mona (``Swin-Transformer-Object-Detection/mmdet/models/
    backbones/swin_transformer_mona.py``):

    .. math::
        x' = m_a(x + \mathrm{Attn}(\mathrm{LN}_1 x)),\qquad
        x'' = m_f(x' + \mathrm{MLP}(\mathrm{LN}_2 x'))

    with ``m`` a :class:`Mona` each (a :class:`MonaPair` per block in a
    :class:`MonaBlockSite`, site kind ``block``), on the residual stream as
    the reference places them. Defaults as the reference: bottleneck 64,
    dropout 0.1, ``gamma = 1e-6``, ``gamma_x = 1``, default init. Supported:
    the Swin (V1) families of mmpretrain, mmseg and mmdet; others are
    refused at build in one line. Non-linear and on the residual stream: it
    does not fold; merging refuses it in one line.

    Trainable parameters: ``2 (133 d + 9,728)`` per block; Swin-B (blocks
    2, 2, 18, 2 of widths 128 .. 1024): 3,667,456 (V-PETL's COCO row lists
    4.16M for the whole method, unconfirmed what else it counts).

    Deviations: none in the computation; the reference's unused ``factor``
    argument is dropped, and the block's forward is run by the site (the
    stock block's code, with the two adapters between its steps).

    Args:
        backbone (dict | nn.Module): The stock Swin backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        bottleneck (int): Defaults to 64.
        dropout (float): Defaults to 0.1.
        **kwargs: ``sites`` (default ``('block',)``), ``targets``,
            ``check_input_shape``, ``save_frozen``, ``init_cfg`` of
            :class:`~mmpetl.models.AdapterBackbone`.
    """

    site_form = 'module'
    default_sites = ('block', )
    site_type = MonaBlockSite
    requires_default_sites = True
    unsupported_reason = ('Mona runs inside the pre-norm Swin blocks of '
                          'mmpretrain, mmseg and mmdet')

    def __init__(self, backbone: BackboneArg, bottleneck: int = 64,
                 dropout: float = 0.1, **kwargs):
        super().__init__(
            backbone,
            settings=dict(bottleneck=bottleneck, mona_dropout=dropout),
            **kwargs)

    def build_adapter(self, site: AttachSite) -> MonaPair:
        if self.targets is None and site.kind != 'block':
            raise ValueError(
                "Mona's adapters run inside a whole Swin block: use site "
                f"kind 'block' (sites=('block',)), not {site.kind!r}")
        return MonaPair(site.in_features, self.bottleneck, self.mona_dropout)

    def nonfoldable_reason(self, site: AttachSite) -> str:
        return ("Mona's adapters (multi-scale depthwise convolutions, GELU) "
                'sit on the residual stream after the attention and the MLP:'
                ' they do not fold into the stock backbone; deploy the '
                'adapter checkpoint with its mmpetl config')
