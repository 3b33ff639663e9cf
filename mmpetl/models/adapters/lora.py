# Copyright (c) mmpetl contributors. All rights reserved.
import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..weight_delta import WeightDelta


class LoRADelta(WeightDelta):
    r"""LoRA's low-rank weight delta, with the DoRA and rsLoRA options.

    `LoRA: Low-Rank Adaptation of Large Language Models
    <https://arxiv.org/abs/2106.09685>`_ (Hu et al., ICLR 2022):

    .. math::
        y = W x + c + s\,B A\,\mathrm{drop}(x),\qquad s = \alpha / r

    ``A`` (r x in) kaiming-uniform (``a = sqrt(5)``, nn.Linear's init) and
    ``B`` (out x r) zero, as loralib and OSU-MLB/PETL_Vision; the delta is
    zero at init. Folds into ``W' = W + s B A`` (computed as a rank-r
    product, never a dense ``(in, in)`` map). ``rslora``: ``s = alpha /
    sqrt(r)`` (`rsLoRA <https://arxiv.org/abs/2312.03732>`_).

    ``dora`` (`DoRA <https://arxiv.org/abs/2402.09353>`_, Liu et al., ICML
    2024) splits the weight into a magnitude ``m`` (out, ), initialised to
    the row norms of ``W``, and a direction:

    .. math::
        y = \frac{m}{\lVert W + s B A\rVert_r} \odot
            (W x + s B A\,\mathrm{drop}(x)) + c

    with ``||.||_r`` the L2 norm of each output row (torch's layout of the
    paper's column norm), treated as a constant in the backward as the
    paper (Sec. 4.3) and NVlabs/DoRA do. Folds into
    ``W' = diag(m / ||W + s B A||_r) (W + s B A)``.

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
                 weight: Tensor = None):
        super().__init__()
        if rank < 1:
            raise ValueError(f'LoRA rank must be >= 1, not {rank}')
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
        branch = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)
        if self.magnitude is None:
            return torch.add(F.linear(x, weight, bias), branch,
                             alpha=self.scaling)
        norm = (weight + self.delta().to(weight.dtype)).norm(dim=1).detach()
        row_scale = self.magnitude / norm
        out = (F.linear(x, weight) + self.scaling * branch) * row_scale
        return out if bias is None else out + bias

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

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        rank, alpha, dropout, rslora, dora: See :class:`LoRADelta`.
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
                 **kwargs):
        super().__init__(
            backbone,
            settings=dict(delta_cfg=dict(
                rank=rank, alpha=alpha, dropout=dropout, rslora=rslora,
                dora=dora)),
            **kwargs)

    def build_adapter(self, site: AttachSite) -> LoRADelta:
        linear = self.backbone.get_submodule(site.path)
        return LoRADelta(site.in_features, site.out_features,
                         weight=linear.weight, **self.delta_cfg)
