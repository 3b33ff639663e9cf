# Copyright (c) mmpetl contributors. All rights reserved.
from typing import List, Optional, Tuple

import torch
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..nonfoldable import ParallelSite
from ..petl import PETLModule
from .vpt import num_extra_tokens

#: Convpass's convolution initialisations: ``'xavier'`` (xavier-uniform) or
#: ``'identity'`` (zero but the centre tap, the identity map).
CONV_INITS = ('xavier', 'identity')


class QuickGELU(nn.Module):
    """``x * sigmoid(1.702 x)``, the reference's activation (CLIP's)."""

    def forward(self, x: Tensor) -> Tensor:
        return x * torch.sigmoid(1.702 * x)


class TokenGrid:
    """The patch grid ``(H, W)`` of the current forward, recorded by a hook
    on the backbone's patch embedding (which returns ``(tokens, (H, W))``)
    for the Convpass branches of every block."""

    def __init__(self):
        self.size: Optional[Tuple[int, int]] = None

    def record(self, module: nn.Module, args: tuple, out: tuple) -> None:
        size = out[1] if isinstance(out, tuple) and len(out) == 2 else None
        if size is None or len(size) != 2:
            raise TypeError(
                f'Convpass: {type(module).__name__} returns no (H, W) patch '
                'grid; its convolutions need one')
        self.size = tuple(int(s) for s in size)


class ConvpassBranch(PETLModule):
    r"""Convpass's convolutional bypass.

    .. math::
        f(x) = s\,W_{up}\,\mathrm{drop}(\phi(\mathrm{Conv}_{3\times3}(
               \phi(W_{down} x + b_{down})))) + s\,b_{up},\qquad
        \phi(z) = z\,\sigma(1.702 z)

    with the 3x3 convolution (``r -> r``, padding 1) on the patch tokens laid
    out on their grid, and on each extra token (the class token) alone as a
    1x1 map (so only its centre tap acts), as the reference.

    Args:
        embed_dims (int): ``d``.
        dim (int): ``r``, the bottleneck width.
        scale (float): ``s``.
        grid (TokenGrid): Where the current forward's patch grid is.
        extra_tokens (int): Tokens before the patches (1: the class token).
        conv_init (str): One of :data:`CONV_INITS`.
        dropout (float): Dropout before the up-projection.

    Shapes:
        input (B, E + H W, d) -> output (B, E + H W, d). Parameters:
        ``d r + r + 9 r^2 + r + r d + d``.
    """

    def __init__(self, embed_dims: int, dim: int, scale: float,
                 grid: TokenGrid, extra_tokens: int,
                 conv_init: str = 'xavier', dropout: float = 0.1):
        super().__init__()
        if conv_init not in CONV_INITS:
            raise ValueError(f'Convpass conv_init must be one of '
                             f'{CONV_INITS}, not {conv_init!r}')
        self.scale = scale
        self.grid = grid
        self.extra_tokens = extra_tokens
        self.down = nn.Linear(embed_dims, dim)
        self.conv = nn.Conv2d(dim, dim, 3, padding=1)
        self.up = nn.Linear(dim, embed_dims)
        self.act = QuickGELU()
        self.dropout = nn.Dropout(dropout)
        with torch.no_grad():
            nn.init.xavier_uniform_(self.down.weight)
            nn.init.zeros_(self.down.bias)
            if conv_init == 'xavier':
                nn.init.xavier_uniform_(self.conv.weight)
            else:
                nn.init.zeros_(self.conv.weight)
                self.conv.weight[:, :, 1, 1] = torch.eye(dim)
            nn.init.zeros_(self.conv.bias)
            nn.init.zeros_(self.up.weight)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        (height, width), e = self.grid.size, self.extra_tokens
        if length != e + height * width:
            raise ValueError(
                f'Convpass: {length} tokens are not {e} extra + a '
                f'{height}x{width} patch grid')
        z = self.act(self.down(x))
        r = z.shape[-1]
        patches = z[:, e:].transpose(1, 2).reshape(batch, r, height, width)
        patches = self.conv(patches).flatten(2).transpose(1, 2)
        extra = self.conv(z[:, :e].reshape(batch * e, r, 1, 1))
        z = torch.cat((extra.reshape(batch, e, r), patches), dim=1)
        return self.up(self.dropout(self.act(z))) * self.scale

    def extra_repr(self) -> str:
        return f'scale={self.scale}, extra_tokens={self.extra_tokens}'


@MODELS.register_module()
class ConvpassBackbone(AdapterBackbone):
    r"""Convpass: convolutional bypasses parallel to every block's attention
    and MLP.

    `Convolutional Bypasses Are Better Vision Transformer Adapters
    <https://arxiv.org/abs/2207.07039>`_ (Jie & Deng, 2022), reference code
    JieShibo/PETL-ViT (``convpass/vtab/convpass.py``):

    .. math::
        x' = x + \mathrm{Attn}(\mathrm{LN}_1 x) + f_a(\mathrm{LN}_1 x),\qquad
        x'' = x' + \mathrm{MLP}(\mathrm{LN}_2 x') + f_m(\mathrm{LN}_2 x')

    with ``f`` a :class:`ConvpassBranch` in a
    :class:`~mmpetl.models.ParallelSite` on the block's attention (site kind
    ``attention``) and its FFN (``mlp``). As the reference: ``r = 8``,
    QuickGELU, dropout 0.1, down-projection xavier-uniform, up-projection
    and every bias zero (the model starts as the pre-trained one), the
    convolution xavier-uniform or the identity (chosen per task there:
    ``conv_init``), ``s`` chosen per task there (0.01 to 100 in
    OSU-MLB/PETL_Vision's grid; default 1 here). Non-linear: it does not
    fold; merging refuses it in one line.

    The patch grid comes from the backbone's patch embedding on each forward
    (:class:`TokenGrid`), so any input size works. Supported: the image ViT
    families with a plain token sequence (mmpretrain's ViT, CLIP, DINOv2,
    DeiT3, BEiT, EVA-02; mmseg's ViT). Refused at build, in one line: SAM
    (its attention sees windows), VideoMAE (a temporal grid), the Swin
    families (whose blocks' grids the reference's Swin variant reads from
    timm; not ported).

    Shapes: tokens (B, E + H W, d) -> same. Trainable parameters per block:
    ``2 (2 d r + 9 r^2 + 2 r + d)``; ViT-B/16 (``r = 8``, 12 blocks):
    327,552 (the paper's 0.33M).

    Deviations: the branch is added to the attention / FFN module's output,
    before the layer scale of backbones that have one (DINOv2, DeiT3, BEiT,
    EVA-02); the reference's timm ViT has none, and adds it after drop path.

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        dim (int): ``r``. Defaults to 8.
        scale (float): ``s``. Defaults to 1.
        conv_init (str): ``'xavier'`` (default) or ``'identity'``.
        dropout (float): Defaults to 0.1.
        **kwargs: ``sites`` (default ``('attention', 'mlp')``), ``targets``,
            ``check_input_shape``, ``save_frozen``, ``init_cfg`` of
            :class:`~mmpetl.models.AdapterBackbone`.
    """

    site_form = 'module'
    default_sites = ('attention', 'mlp')
    site_type = ParallelSite
    requires_default_sites = True
    unsupported_reason = ('it has no attention and MLP sites on a plain '
                          'image token grid (windowed or video attention)')

    def __init__(self,
                 backbone: BackboneArg,
                 dim: int = 8,
                 scale: float = 1.,
                 conv_init: str = 'xavier',
                 dropout: float = 0.1,
                 **kwargs):
        super().__init__(
            backbone,
            settings=dict(
                dim=dim,
                scale=scale,
                conv_init=conv_init,
                branch_dropout=dropout),
            **kwargs)

    def build_shared(self, sites: List[AttachSite]) -> None:
        """The patch grid of the current forward, recorded by a hook on the
        patch embedding (every backbone with these sites has one)."""
        self.grid = TokenGrid()
        self.backbone.patch_embed.register_forward_hook(self.grid.record)

    def build_adapter(self, site: AttachSite) -> ConvpassBranch:
        return ConvpassBranch(site.in_features, self.dim, self.scale,
                              self.grid, num_extra_tokens(self.backbone),
                              self.conv_init, self.branch_dropout)

    def nonfoldable_reason(self, site: AttachSite) -> str:
        return ("Convpass's branch (3x3 convolution between QuickGELUs) is "
                f'non-linear and parallel to the {site.kind}: it does not '
                'fold into the stock backbone; deploy the adapter checkpoint '
                'with its mmpetl config')
