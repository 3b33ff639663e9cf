# Copyright (c) mmpetl contributors. All rights reserved.
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..mergeable_adapter import MergeableAdapter, add_up_projection


class GroupedLinear(nn.Module):
    """A linear map whose weight is block-diagonal: ``groups`` independent
    linears, each from ``in_features / groups`` to ``out_features / groups``.

    The same map as ``nn.Conv1d(in, out, 1, groups=groups)``, which is how the
    RepAdapter reference code writes it, computed as one dense GEMM with the
    block-diagonal weight: the blocks are tiny (h/g wide), so the zeros cost
    less than the transposes and copies of a batched product.

    Args:
        in_features (int): Input size, divisible by ``groups``.
        out_features (int): Output size, divisible by ``groups``.
        groups (int): Number of blocks.
        bias (bool): Whether to add a bias. Defaults to True.

    Shapes:
        weight: (out_features, in_features // groups), as Conv1d's weight.
        input: (..., in_features) -> output: (..., out_features).
    """

    def __init__(self,
                 in_features: int,
                 out_features: int,
                 groups: int,
                 bias: bool = True):
        super().__init__()
        if in_features % groups or out_features % groups:
            raise ValueError(f'in_features ({in_features}) and out_features '
                             f'({out_features}) must be divisible by groups '
                             f'({groups})')
        self.in_features = in_features
        self.out_features = out_features
        self.groups = groups
        self.weight = nn.Parameter(
            torch.empty(out_features, in_features // groups))
        self.bias = nn.Parameter(
            torch.empty(out_features)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.dense_weight(), self.bias)

    def dense_weight(self) -> Tensor:
        """The block-diagonal (out_features, in_features) matrix."""
        g = self.groups
        blocks = self.weight.view(g, self.out_features // g, 1, -1)
        # dense[(a, p), (b, q)] = [a == b] * blocks[a, p, q], written without
        # torch.block_diag so that unmerged models export to ONNX too.
        eye = torch.eye(g, dtype=blocks.dtype, device=blocks.device)
        return (eye.view(g, 1, g, 1) * blocks).reshape(
            self.out_features, self.in_features)


class RepAdapter(MergeableAdapter):
    r"""RepAdapter: a sequential, re-parameterizable adapter.

    `Towards Efficient Visual Adaption via Structural Re-parameterization
    <https://arxiv.org/abs/2302.08106>`_ (Luo et al.).

    .. math::
        a(x) = x + s \cdot B(\mathrm{drop}(A x + a_b)) + s \cdot b_b

    ``A``: dense ``d -> h`` with bias; ``B``: group-wise ``h -> d`` with
    ``groups`` blocks, with bias; ``s``: a fixed scalar. A is xavier-uniform,
    B and both biases are zero, so the adapter is the identity at init.
    Without dropout the map is affine, so it folds into the next linear:
    ``M = I + s B_dense A``, ``m = s (B_dense a_b + b_b)``, as the rank-h
    update ``W + (W s B_dense) A`` (:meth:`low_rank`).

    The forward computes ``x + s (B_dense h + b_b)`` as one GEMM with ``x`` as
    its accumulator (:func:`add_up_projection`): the training step's cost
    beyond the frozen backbone's is then the two thin GEMMs and their
    gradients, not passes over (..., d) temporaries.

    Args:
        in_features (int): Token dimension ``d``.
        hidden_dim (int): Hidden size ``h``. Defaults to 8 (the paper's).
        groups (int): Groups of ``B``. Defaults to 2 (the paper's).
        scale (float): The scale ``s``. Defaults to 1.0; the paper picks it
            per task from {0.1, 0.5, 1, 5, 10}.
        dropout (float): Dropout between A and B. Defaults to 0.1.
        bias (bool): Whether A and B have biases. Defaults to True. Without
            them ``m = 0``: for sites that take no shift (Swin V2's
            attention), a deviation from the paper's adapter.

    Shapes:
        input: (..., d) -> output: (..., d).
    """

    def __init__(self,
                 in_features: int,
                 hidden_dim: int = 8,
                 groups: int = 2,
                 scale: float = 1.0,
                 dropout: float = 0.1,
                 bias: bool = True):
        super().__init__()
        self.in_features = in_features
        self.has_shift = bias
        self.scale = scale
        self.down = nn.Linear(in_features, hidden_dim, bias=bias)
        self.dropout = nn.Dropout(dropout)
        self.up = GroupedLinear(hidden_dim, in_features, groups, bias=bias)
        nn.init.xavier_uniform_(self.down.weight)
        nn.init.zeros_(self.up.weight)
        if bias:
            nn.init.zeros_(self.down.bias)
            nn.init.zeros_(self.up.bias)

    def forward(self, x: Tensor) -> Tensor:
        hidden = self.dropout(self.down(x))
        return add_up_projection(x, hidden, self.up.dense_weight(),
                                 self.up.bias, self.scale)

    def low_rank(self) -> Tuple[Tensor, Tensor, Tensor]:
        up = self.up.dense_weight().double()
        down = self.down.weight.double()
        shift = up.new_zeros(self.in_features)
        if self.has_shift:
            shift = self.scale * (up @ self.down.bias.double() +
                                  self.up.bias.double())
        return self.scale * up, down.t(), shift

    def extra_repr(self) -> str:
        return f'scale={self.scale}, bias={self.has_shift}'


@MODELS.register_module()
class RepAdapterBackbone(AdapterBackbone):
    """A frozen backbone with :class:`RepAdapter` in front of its target
    linears (qkv and the FFN's first linear by default).

    Args:
        backbone (dict | nn.Module): The stock backbone, built or as a
            config, e.g.
            ``dict(type='VisionTransformer', arch='b', init_cfg=...)``.
        hidden_dim (int): See :class:`RepAdapter`. Defaults to 8.
        groups (int): See :class:`RepAdapter`. Defaults to 2.
        scale (float): See :class:`RepAdapter`. Defaults to 1.0.
        dropout (float): See :class:`RepAdapter`. Defaults to 0.1.
        **kwargs: ``sites``, ``targets``, ``save_frozen``, ``init_cfg`` of
            :class:`AdapterBackbone`.
    """

    def __init__(self,
                 backbone: BackboneArg,
                 hidden_dim: int = 8,
                 groups: int = 2,
                 scale: float = 1.0,
                 dropout: float = 0.1,
                 **kwargs):
        if isinstance(scale, bool) or not isinstance(scale, (int, float)):
            raise TypeError(f'RepAdapterBackbone: scale must be a number, '
                            f'not {scale!r}')
        super().__init__(
            backbone,
            settings=dict(adapter_cfg=dict(
                hidden_dim=hidden_dim, groups=groups, scale=scale,
                dropout=dropout)),
            **kwargs)

    def build_adapter(self, site: AttachSite) -> RepAdapter:
        return RepAdapter(
            site.in_features, bias=site.shift, **self.adapter_cfg)
