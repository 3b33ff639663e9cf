# Copyright (c) mmpetl contributors. All rights reserved.
import logging
import math
from typing import List

import torch
import torch.nn.functional as F
from mmengine.logging import print_log
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..attach_sites import site_patterns
from ..weight_delta import WeightDelta, dropout_note

#: How DoRA's dropout enters (``dora_dropout``): ``'reference'``, NVlabs/DoRA
#: and peft: ``W x + c + (n - 1) W drop(x) + n s B A drop(x)``;
#: ``'branch'``: ``n (W x + s B A drop(x)) + c`` (mmpetl before 2026-12).
DORA_DROPOUTS = ('reference', 'branch')


class LoRADelta(WeightDelta):
    r"""LoRA's low-rank weight delta, with the DoRA and rsLoRA options.

    `LoRA: Low-Rank Adaptation of Large Language Models
    <https://arxiv.org/abs/2106.09685>`_ (Hu et al., ICLR 2022):

    .. math::
        y = W x + c + s\,B A\,\mathrm{drop}(x),\qquad s = \alpha / r

    ``A`` (r x in) kaiming-uniform (``a = sqrt(5)``, nn.Linear's init) and
    ``B`` (out x r) zero, as loralib and the source lines of
    OSU-MLB/PETL_Vision's ``model/lora.py``; the delta is zero at init.
    (PETL_Vision's model then re-initialises every ``nn.Linear`` it holds,
    its LoRA layers included, with timm's ``trunc_normal(0.02)`` / zero
    bias, so what it runs starts with ``B`` not zero: a reference bug, not
    followed.) Folds into ``W' = W + s B A`` (computed as a rank-r
    product, never a dense ``(in, in)`` map). ``rslora``: ``s = alpha /
    sqrt(r)`` (`rsLoRA <https://arxiv.org/abs/2312.03732>`_).

    ``dora`` (`DoRA <https://arxiv.org/abs/2402.09353>`_, Liu et al., ICML
    2024) splits the weight into a magnitude ``m`` (out, ), initialised to
    the row norms of ``W``, and a direction:

    .. math::
        y = W x + c + (n - 1) \odot W\,\mathrm{drop}(x)
            + n \odot s B A\,\mathrm{drop}(x),\qquad
        n = \frac{m}{\lVert W + s B A\rVert_r}

    as NVlabs/DoRA and peft compute it (``dora_dropout='reference'``), with
    ``||.||_r`` the L2 norm of each output row (torch's layout of the
    paper's column norm), treated as a constant in the backward as the
    paper (Sec. 4.3) and NVlabs/DoRA do. Without dropout (evaluation) it is
    ``n ⊙ (W + s B A) x + c``. ``dora_dropout='branch'`` computes
    ``n ⊙ (W x + s B A drop(x)) + c`` instead (mmpetl's form before; with
    dropout 0.1 in training it differs from the reference by 9.1e-2 in the
    output and 0.34 in the gradients, relative). Folds into
    ``W' = diag(n) (W + s B A)``.

    Args:
        in_features (int): Input width.
        out_features (int): Output width.
        rank (int): ``r``. Defaults to 8.
        alpha (float): ``alpha``. Defaults to 8 (``s = 1``, the merge
            factor of PETL_Vision's LoRA baseline).
        dropout (float): Dropout on the branch's input. Defaults to 0.1
            (PETL_Vision).
        rslora (bool): ``s = alpha / sqrt(r)``. Defaults to False.
        dora (bool): DoRA's magnitude and direction. Defaults to False.
        weight (Tensor, optional): The stock weight, to initialise DoRA's
            magnitude.
        dora_dropout (str): One of :data:`DORA_DROPOUTS`. Defaults to
            ``'reference'``.

    Shapes:
        input: (..., in) -> output: (..., out).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 rank: int = 8,
                 alpha: float = 8.,
                 dropout: float = 0.1,
                 rslora: bool = False,
                 dora: bool = False,
                 weight: Tensor = None,
                 dora_dropout: str = 'reference'):
        super().__init__()
        if rank < 1:
            raise ValueError(f'LoRA rank must be >= 1, not {rank}')
        if dora_dropout not in DORA_DROPOUTS:
            raise ValueError(f'dora_dropout must be one of {DORA_DROPOUTS}, '
                             f'not {dora_dropout!r}')
        self.dora_dropout = dora_dropout
        self.rank = rank
        self.scaling = alpha / (math.sqrt(rank) if rslora else rank)
        self.lora_A = nn.Parameter(torch.empty(rank, in_features))
        self.lora_B = nn.Parameter(torch.zeros(out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)
        self.magnitude = None
        if dora:
            if weight is None:
                raise ValueError('DoRA needs the stock weight for its '
                                 'magnitude')
            self.magnitude = nn.Parameter(
                weight.detach().float().norm(dim=1).to(weight.dtype))

    def delta(self) -> Tensor:
        """``s B A``, shape (out, in)."""
        return self.scaling * self.lora_B @ self.lora_A

    def forward(self, x: Tensor, weight: Tensor, bias) -> Tensor:
        if x is None:
            return self.adapted_weight(weight)
        dropped = self.dropout(x)
        branch = F.linear(F.linear(dropped, self.lora_A), self.lora_B)
        if self.magnitude is None:
            return torch.add(F.linear(x, weight, bias), branch,
                             alpha=self.scaling)
        row_scale = self.row_scale(weight)
        base = F.linear(x, weight)
        if self.dora_dropout == 'branch' or not (self.training
                                                 and self.dropout.p):
            # Without dropout the reference's terms add up to this.
            out = (base + self.scaling * branch) * row_scale
        else:
            out = base + (row_scale - 1) * F.linear(dropped, weight) + \
                row_scale * self.scaling * branch
        return out if bias is None else out + bias

    def row_scale(self, weight: Tensor) -> Tensor:
        """DoRA's ``n = m / ||W + s B A||_r`` (out, ), the norm detached."""
        norm = (weight + self.delta().to(weight.dtype)).norm(dim=1).detach()
        return self.magnitude / norm

    def adapted_weight(self, weight: Tensor) -> Tensor:
        adapted = weight + self.delta().to(weight.dtype)
        if self.magnitude is None:
            return adapted
        return adapted * self.row_scale(weight)[:, None]

    def merged_weight(self, weight: Tensor) -> Tensor:
        merged = torch.addmm(weight, self.lora_B.double(),
                             self.lora_A.double(), alpha=self.scaling)
        if self.magnitude is None:
            return merged
        row_scale = self.magnitude.double() / merged.norm(dim=1)
        return merged * row_scale[:, None]

    def extra_repr(self) -> str:
        return (f'rank={self.rank}, scaling={self.scaling:g}, '
                f'dora={self.magnitude is not None}')


@MODELS.register_module()
class LoRABackbone(AdapterBackbone):
    """A frozen backbone with :class:`LoRADelta` on its target linears: the
    fused ``qkv`` by default (the PETL papers' LoRA baseline, covering q, k
    and v).

    Trainable parameters: ``r (in + out)`` per linear (DoRA: ``+ out``).
    ViT-B/16, rank 8 on qkv: ``12 x 8 x (768 + 2304) = 294,912`` (the
    tables' 0.29M); DoRA adds ``12 x 2304 = 27,648``.

    Where the attention applies ``qkv.weight`` itself (BEiT, Swin V2,
    VideoMAE; mmseg ViT's ``nn.MultiheadAttention`` ``in_proj_weight``) the
    delta acts on that weight (:class:`~mmpetl.models.DeltaModuleSite`):
    the fold is exact whatever holds the bias, but the dropout cannot act
    on the branch's own input there, so those sites run without it (one
    warning line at build). A backbone without attention (ConvNeXt) gets
    its pointwise linears by default (``fc1``, ``fc2``), as peft targets
    them.

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        rank, alpha, dropout, rslora, dora, dora_dropout: See
            :class:`LoRADelta`.
        **kwargs: ``sites`` (kinds among ``qkv``, ``proj``, ``fc1``,
            ``fc2``), ``targets``, ``save_frozen``, ``init_cfg`` of
            :class:`AdapterBackbone`.
    """

    site_form = 'delta'
    default_sites = ('qkv', )

    def __init__(self,
                 backbone: BackboneArg,
                 rank: int = 8,
                 alpha: float = 8.,
                 dropout: float = 0.1,
                 rslora: bool = False,
                 dora: bool = False,
                 dora_dropout: str = 'reference',
                 **kwargs):
        super().__init__(
            backbone,
            settings=dict(delta_cfg=dict(
                rank=rank, alpha=alpha, dropout=dropout, rslora=rslora,
                dora=dora, dora_dropout=dora_dropout)),
            **kwargs)
        note = dropout_note(self, dropout)
        if note:
            print_log(note, logger='current', level=logging.WARNING)

    def find_sites(self) -> List[AttachSite]:
        """The table's sites; a backbone without attention (no ``qkv``
        kind: ConvNeXt) gets ``fc1`` and ``fc2`` by default."""
        if self.sites is None and self.targets is None and (
                'qkv' not in site_patterns(self.backbone)):
            self.sites = ('fc1', 'fc2')
        return super().find_sites()

    def build_adapter(self, site: AttachSite) -> LoRADelta:
        weight = self.backbone.get_submodule(site.path).get_parameter(
            'weight' if site.linear else site.fold_target.weight)
        return LoRADelta(site.in_features, site.out_features,
                         weight=weight, **self.delta_cfg)
