# Copyright (c) mmpetl contributors. All rights reserved.
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..nonfoldable import SequentialSite
from ..petl import PETLModule


class LoRandProjection(nn.Module):
    r"""A linear map synthesised from low-rank branches.

    .. math::
        W = \sum_{i=1}^{\alpha} (P_i K_i Q_i)^\top,\qquad y = W x + b

    with ``P_i`` (in x beta), the kernel ``K_i`` (beta x beta) and ``Q_i``
    (beta x out), each drawn as the reference draws them (kaiming-uniform,
    ``a = sqrt(5)``, on the ``(rows, cols)`` matrix: bound ``1 / sqrt(cols)``),
    branch by branch, and ``b ~ U(-1/sqrt(in), 1/sqrt(in))`` (nn.Linear's
    bias init for the synthesised weight).

    Args:
        in_features (int): ``in``.
        out_features (int): ``out``.
        branches (int): ``alpha``.
        kernel_dim (int): ``beta``.

    Shapes:
        input (..., in) -> output (..., out). Parameters:
        ``alpha beta (in + beta + out) + out``.
    """

    def __init__(self, in_features: int, out_features: int, branches: int,
                 kernel_dim: int):
        super().__init__()
        self.p = nn.Parameter(torch.empty(branches, in_features, kernel_dim))
        self.kernel = nn.Parameter(
            torch.empty(branches, kernel_dim, kernel_dim))
        self.q = nn.Parameter(torch.empty(branches, kernel_dim, out_features))
        self.bias = nn.Parameter(torch.empty(out_features))
        with torch.no_grad():
            for i in range(branches):
                for factor in (self.p, self.kernel, self.q):
                    nn.init.kaiming_uniform_(factor[i], a=math.sqrt(5))
            bound = 1 / math.sqrt(in_features)
            nn.init.uniform_(self.bias, -bound, bound)

    def weight(self) -> Tensor:
        """``W``, shape (out, in)."""
        return torch.einsum('nik,nkl,nlo->oi', self.p, self.kernel, self.q)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight().to(x.dtype), self.bias.to(x.dtype))


class LoRand(PETLModule):
    r"""One LoRand adapter: a GELU bottleneck whose two projections are
    :class:`LoRandProjection` s, with its own skip connection.

    .. math::
        a(h) = h + W_U\,\mathrm{GELU}(W_D h + b_D) + b_U

    ``W_D`` (d -> d / factor) and ``W_U`` (d / factor -> d) each synthesised
    from ``alpha`` branches of kernel size ``beta``, every factor its own
    (as the authors' ``Lorand_Multi``). Not zero at init (no factor is): the
    adapter starts away from the identity, as the reference's.

    Args:
        embed_dims (int): ``d``.
        hidden (int): ``d / factor``.
        branches (int): ``alpha``.
        kernel_dim (int): ``beta``.

    Shapes:
        (..., d) -> (..., d). Parameters:
        ``2 alpha beta (d + h) + 2 alpha beta^2 + d + h``.
    """

    def __init__(self, embed_dims: int, hidden: int, branches: int,
                 kernel_dim: int):
        super().__init__()
        self.down = LoRandProjection(embed_dims, hidden, branches, kernel_dim)
        self.up = LoRandProjection(hidden, embed_dims, branches, kernel_dim)

    def forward(self, h: Tensor) -> Tensor:
        return h + self.up(F.gelu(self.down(h)))


@MODELS.register_module()
class LoRandBackbone(AdapterBackbone):
    r"""LoRand: low-rank synthesised adapters after the attention and the
    MLP of every Swin block.

    *1% VS 100%: Parameter-Efficient Low Rank Adapter for Dense
    Predictions* (Yin et al., CVPR 2023), from the authors' code (DongshuoYin/CoLin,
    ``MMDetection/mmdet/models/backbones/swin_lorand.py``):

    .. math::
        x' = x + a_1(\mathrm{dp}(\mathrm{Attn}(\mathrm{LN}_1 x))),\qquad
        x'' = x' + a_2(\mathrm{dp}(\mathrm{MLP}(\mathrm{LN}_2 x')))

    with ``a`` a :class:`LoRand` each, on the output of each residual
    branch after its drop path ``dp`` and before the residual add (site
    kinds ``attn_branch``, ``ffn_branch``: the branches' drop-path modules,
    each in a :class:`~mmpetl.models.SequentialSite`). Supported: the Swin
    (V1) families of mmseg, mmdet and mmpretrain (the reference's), and the
    same places in mmpretrain's ViT (CLIP, DINOv2, DeiT3) and mmseg's ViT;
    others are refused at build in one line. Non-linear (GELU): it does not fold; merging refuses
    it in one line.

    Defaults: ``factor = 2`` (hidden ``d / 2``) and kernel ``beta = 8`` as
    the authors' code, ``alpha = 2`` branches: the paper's LoRand, the row
    the E3VA and V-PETL Bench tables list (1.20M at Swin-B). The authors'
    swin file sets ``num_branch=4`` (2,370,816 at Swin-B: ``branches=4``).

    Trainable parameters, per block of width ``d`` (two adapters,
    ``h = d / factor``): ``2 (2 alpha beta (d + h) + 2 alpha beta^2 + d +
    h)``; with the defaults ``99 d + 512``. Swin-B (blocks 2, 2, 18, 2 of
    widths 128 .. 1024): ``99 x 12,032 + 24 x 512 = 1,203,456`` (the
    tables' 1.20M); Swin-L (192 .. 1536): ``99 x 18,048 + 24 x 512 =
    1,799,040`` (V-PETL Bench's VOC row prints 1.31M, which no setting of
    this formula gives at Swin-L; its Swin-B figure matches).

    Deviations: none in the computation. The authors' code computes each
    projection's dense weight from its factors on every forward, as here;
    its parameter names differ (one ``(alpha, ...)`` tensor per factor here
    for the reference's ``A{i}``, ``g{i}``, ``B{i}``).

    Args:
        backbone (dict | nn.Module): The stock Swin backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        factor (int): ``d / h``. Defaults to 2.
        branches (int): ``alpha``. Defaults to 2.
        kernel_dim (int): ``beta``. Defaults to 8.
        **kwargs: ``targets``, ``check_input_shape``, ``save_frozen``,
            ``init_cfg`` of :class:`~mmpetl.models.AdapterBackbone`.
    """

    site_form = 'module'
    default_sites = ('attn_branch', 'ffn_branch')
    site_type = SequentialSite
    requires_default_sites = True
    unsupported_reason = ('LoRand sits where each residual branch of a '
                          'block ends (its drop path), and this backbone has '
                          'no such module per branch')
    alternative = 'use mmpetl.HoulsbyAdapterBackbone'

    def __init__(self,
                 backbone: BackboneArg,
                 factor: int = 2,
                 branches: int = 2,
                 kernel_dim: int = 8,
                 **kwargs):
        if min(factor, branches, kernel_dim) < 1:
            raise ValueError('LoRandBackbone: factor, branches and '
                             'kernel_dim must be >= 1, not '
                             f'{(factor, branches, kernel_dim)}')
        super().__init__(
            backbone,
            settings=dict(
                factor=factor, branches=branches, kernel_dim=kernel_dim),
            **kwargs)

    def build_adapter(self, site: AttachSite) -> LoRand:
        return LoRand(site.out_features, site.out_features // self.factor,
                      self.branches, self.kernel_dim)

    def nonfoldable_reason(self, site: AttachSite) -> str:
        return ("LoRand's adapter is a GELU bottleneck after the attention "
                'and the MLP: it does not fold into the stock backbone; '
                'deploy the adapter checkpoint with its mmpetl config')
