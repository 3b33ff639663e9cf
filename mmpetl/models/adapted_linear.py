# Copyright (c) mmpetl contributors. All rights reserved.
from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mergeable_adapter import MergeableAdapter


class AdaptedLinear(nn.Linear):
    """A frozen ``nn.Linear`` with an adapter on its input.

    ``y = W a(x) + c``. It keeps the wrapped linear's own ``weight`` and
    ``bias`` parameters (same objects, same state-dict keys), and adds the
    adapter's under ``adapter.``, so a stock checkpoint still loads into it.

    Args:
        linear (nn.Linear): The target linear. Not copied.
        adapter (MergeableAdapter): The adapter, of width ``in_features``.

    Shapes:
        input: (..., in_features) -> output: (..., out_features).
    """

    def __init__(self, linear: nn.Linear, adapter: MergeableAdapter):
        nn.Module.__init__(self)
        if adapter.in_features != linear.in_features:
            raise ValueError(f'adapter width {adapter.in_features} != linear '
                             f'in_features {linear.in_features}')
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.weight = linear.weight
        self.bias = linear.bias
        # e.g. mmcv's Linear: the merged layer is of the stock class.
        self.linear_type = type(linear)
        self.adapter = adapter.to(linear.weight.device)
        self.train(linear.training)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.adapter(x), self.weight, self.bias)

    @torch.no_grad()
    def merged_linear(self) -> nn.Linear:
        """A linear of the wrapped linear's class computing this layer with
        dropout off.

        With ``a(x) = M x + m``: ``W' = W M`` and ``c' = W m + c``, computed
        in float64 and cast back to the weight's dtype.
        """
        weight, shift = fold_adapter(self.weight, self.adapter)
        if self.bias is not None:
            bias = shift + self.bias.double()
        elif bool(shift.abs().max() > 0):
            raise ValueError(
                'cannot fold an adapter with a non-zero shift into a linear '
                'without bias')
        merged = self.linear_type(
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self.weight.device,
            dtype=self.weight.dtype)
        merged.weight.copy_(weight)
        if self.bias is not None:
            merged.bias.copy_(bias)
        merged.weight.requires_grad_(self.weight.requires_grad)
        if merged.bias is not None:
            merged.bias.requires_grad_(self.bias.requires_grad)
        merged.train(self.training)
        return merged


@torch.no_grad()
def fold_adapter(weight: Tensor,
                 adapter: MergeableAdapter) -> Tuple[Tensor, Tensor]:
    """Fold ``adapter`` into a linear's ``weight`` (out, in).

    With ``a(x) = M x + m``: returns ``(W M, W m)`` in float64, the new
    weight and what the adapter adds to the linear's bias.
    """
    matrix, shift = adapter.affine()
    weight = weight.double()
    return weight @ matrix, weight @ shift
