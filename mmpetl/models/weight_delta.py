# Copyright (c) mmpetl contributors. All rights reserved.
"""The weight-delta fold form: a linear computed with ``W + ΔW`` (LoRA,
DoRA, FacT)."""
from abc import ABCMeta, abstractmethod

import torch
from torch import Tensor, nn

from .adapted_linear import adopt_linear, stock_linear
from .petl import AdaptedSite, PETLModule


class WeightDelta(PETLModule, metaclass=ABCMeta):
    """Base class of the adapters that change a linear's weight.

    A subclass computes the adapted linear's whole output in its
    :meth:`forward` (so that it can keep a low-rank branch low-rank, or
    rescale rows as DoRA does), and gives the folded weight in
    :meth:`merged_weight`. In evaluation mode (dropout off) both describe
    the same linear map: ``forward(x, W, c) = x @ merged_weight(W).T + c``.
    A subclass without both cannot be built (``TypeError``).
    """

    @abstractmethod
    def forward(self, x: Tensor, weight: Tensor, bias) -> Tensor:
        """The adapted linear's output on ``x`` (..., in)."""

    @abstractmethod
    def merged_weight(self, weight: Tensor) -> Tensor:
        """The folded weight (out, in), from the stock ``weight`` in
        float64; computed in float64 and without forming a dense
        ``(in, in)`` matrix."""


class DeltaLinear(nn.Linear, AdaptedSite):
    """A frozen ``nn.Linear`` whose weight a :class:`WeightDelta` changes.

    It keeps the linear's own ``weight`` and ``bias`` (same objects, same
    state-dict keys) and adds the adapter's under ``adapter.``. Folding
    writes ``merged_weight(W)`` into a copy of the stock linear; the bias is
    unchanged.

    Args:
        linear (nn.Linear): The target linear. Not copied.
        adapter (WeightDelta): Its delta.

    Shapes:
        input: (..., in_features) -> output: (..., out_features).
    """

    fold_form = 'weight delta'

    def __init__(self, linear: nn.Linear, adapter: WeightDelta):
        nn.Module.__init__(self)
        adopt_linear(self, linear)
        self.adapter = adapter.to(linear.weight.device)
        self.train(linear.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.adapter(x, self.weight, self.bias)

    def stock_module(self) -> nn.Linear:
        return stock_linear(self)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        linear = self.stock_module()
        linear.weight.copy_(self.adapter.merged_weight(
            linear.weight.double()))
        return linear

    def describe_fold(self) -> str:
        return 'weight + delta'
