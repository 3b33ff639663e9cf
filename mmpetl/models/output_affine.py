# Copyright (c) mmpetl contributors. All rights reserved.
"""The output-affine fold form: ``y' = γ ⊙ y + β`` on a module's output
channels (SSF)."""
from typing import Optional

import torch
from torch import Tensor, nn

from .adapted_module import ModuleSite
from .petl import PETLModule


class ScaleShift(PETLModule):
    r"""A per-channel scale and shift, ``y' = γ ⊙ y + β``.

    Args:
        channels (int): ``C``, the number of channels.
        channel_dim (int): The channel dimension of ``y``: -1 (tokens
            ``(..., C)``) or 1 (feature maps ``(B, C, ...)``).
        shift (bool): Whether to learn ``β``. Without it ``β = 0`` (for a
            module without bias, where a shift could not fold).

    Shapes:
        ``γ``, ``β``: (C, ). input: ``y`` -> output: same shape.
    """

    def __init__(self, channels: int, channel_dim: int = -1,
                 shift: bool = True):
        super().__init__()
        self.channels = channels
        self.channel_dim = channel_dim
        self.scale = nn.Parameter(torch.ones(channels))
        self.shift = nn.Parameter(torch.zeros(channels)) if shift else None

    def _view(self, value: Tensor, y: Tensor) -> Tensor:
        if self.channel_dim == -1:
            return value
        return value.view(-1, *[1] * (y.dim() - 2))

    def forward(self, y: Tensor) -> Tensor:
        scale = self._view(self.scale, y)
        if self.shift is None:
            return y * scale
        return torch.addcmul(self._view(self.shift, y), y, scale)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, channel_dim={self.channel_dim}, '
                f'shift={self.shift is not None}')


class OutputAffineSite(ModuleSite):
    """A stock module with a :class:`ScaleShift` on its output.

    ``forward(...) = a(module(...))``. Folds into every module whose output
    channel ``o`` is ``weight[o] * (...) + bias[o]``: a linear's rows, a
    convolution's output channels, a norm's elementwise affine::

        weight'[o] = γ_o weight[o],    bias'[o] = γ_o bias[o] + β_o

    Args:
        module (nn.Module): The stock module (with ``weight`` of shape
            (C, ...) and ``bias`` (C, ) or None). Not copied.
        adapter (ScaleShift): Its scale and shift, of width ``C``; without
            shift where the module has no bias.
    """

    fold_form = 'output-affine'
    adapter: ScaleShift

    def __init__(self, module: nn.Module, adapter: ScaleShift):
        if module.weight.shape[0] != adapter.channels:
            raise ValueError(f'scale width {adapter.channels} != '
                             f'{type(module).__name__} output channels '
                             f'{module.weight.shape[0]}')
        if adapter.shift is not None and getattr(module, 'bias',
                                                 None) is None:
            raise ValueError(f'{type(module).__name__} has no bias to fold '
                             'a shift into; build the scale without shift')
        super().__init__(module, adapter)

    def forward(self, *args, **kwargs):
        return self.adapter(self.module(*args, **kwargs))

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """A copy of the stock module with the scale and shift folded in,
        computed in float64 and cast back."""
        module = self.stock_module()
        scale = self.adapter.scale.double()
        weight = module.weight
        weight.copy_(weight.double() *
                     scale.view(-1, *[1] * (weight.dim() - 1)))
        bias: Optional[Tensor] = getattr(module, 'bias', None)
        if bias is not None:
            new_bias = scale * bias.double()
            if self.adapter.shift is not None:
                new_bias += self.adapter.shift.double()
            bias.copy_(new_bias)
        module.train(self.training)
        return module

    def describe_fold(self) -> str:
        bias = 'bias' if getattr(self.module, 'bias', None) is not None \
            else 'no bias (scale only)'
        return f'rows of weight; {bias}'
