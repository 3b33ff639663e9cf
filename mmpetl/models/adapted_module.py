# Copyright (c) mmpetl contributors. All rights reserved.
import copy
from typing import Optional, Sequence

import torch
from torch import Tensor, nn

from .adapted_linear import fold_adapter
from .mergeable_adapter import MergeableAdapter


class AdaptedModule(nn.Module):
    """A frozen module with an adapter on its input, for modules that feed
    that input to one linear without calling the linear's ``forward``.

    ``forward(x, ...) = module(a(x), ...)``. mmaction2's VideoMAE attention is
    the case in point: it computes ``F.linear(x, qkv.weight, cat(q_bias, 0,
    v_bias))`` itself, so an adapter wrapped around ``qkv`` would never run.

    The wrapper *adopts* the module's parameters, buffers and children (the
    same objects under the same names) and adds ``adapter.``, so its state
    dict is the stock module's plus the adapter's, and a stock checkpoint
    still loads into it. The module itself is held out of the module tree.

    Folding (:meth:`merged_module`), with ``a(x) = M x + m`` and the linear's
    weight ``W`` (out, in): ``W' = W M``; the bias ``W m`` is added to the
    linear's bias, or, with a ``bias_sink``, split into equal chunks added to
    the named parameters of the module (a chunk named ``None`` is dropped:
    the module must be invariant to it, as attention is to a key bias).

    Args:
        module (nn.Module): The stock module. Not copied.
        adapter (MergeableAdapter): The adapter, of the linear's input width.
        linear (str): Path of the linear inside ``module``.
        bias_sink (Sequence[str | None], optional): See above.

    Shapes:
        input: ``(..., in_features)`` as the module takes it.
    """

    def __init__(self,
                 module: nn.Module,
                 adapter: MergeableAdapter,
                 linear: str,
                 bias_sink: Optional[Sequence[Optional[str]]] = None):
        super().__init__()
        target = module.get_submodule(linear)
        if adapter.in_features != target.in_features:
            raise ValueError(f'adapter width {adapter.in_features} != linear '
                             f'in_features {target.in_features}')
        # A list keeps the module out of the tree: its members are adopted.
        self._module = [module]
        for name, param in module._parameters.items():
            self.register_parameter(name, param)
        for name, buffer in module._buffers.items():
            self.register_buffer(
                name,
                buffer,
                persistent=name not in module._non_persistent_buffers_set)
        for name, child in module._modules.items():
            self.add_module(name, child)
        self.adapter = adapter.to(target.weight.device)
        self.linear_path = linear
        self.bias_sink = None if bias_sink is None else tuple(bias_sink)
        self.train(module.training)

    @property
    def module(self) -> nn.Module:
        """The wrapped stock module."""
        return self._module[0]

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        # Conversions may replace tensors: point the module at ours.
        module = self.module
        for name in module._parameters:
            module._parameters[name] = self._parameters[name]
        for name in module._buffers:
            module._buffers[name] = self._buffers[name]
        return self

    def train(self, mode: bool = True) -> 'AdaptedModule':
        super().train(mode)
        self.module.training = mode
        return self

    def forward(self, x: Tensor, *args, **kwargs):
        return self.module(self.adapter(x), *args, **kwargs)

    @torch.no_grad()
    def merged_module(self) -> nn.Module:
        """A copy of the stock module computing this one with dropout off.

        Raises:
            ValueError: If the folded bias is non-zero and has nowhere to go
                (no linear bias and no bias-sink parameters, e.g. VideoMAE's
                attention built with ``qkv_bias=False``).
        """
        module = copy.deepcopy(self.module)
        linear = module.get_submodule(self.linear_path)
        weight, shift = fold_adapter(linear.weight, self.adapter)
        linear.weight.copy_(weight)
        if self.bias_sink is not None and all(
                hasattr(module, name) for name in self.bias_sink if name):
            for name, chunk in zip(self.bias_sink,
                                   shift.chunk(len(self.bias_sink))):
                if name is None:
                    continue
                sink = getattr(module, name)
                if sink.shape != chunk.shape:
                    raise ValueError(
                        f'bias sink {name} has shape {tuple(sink.shape)}, '
                        f'not that of its chunk {tuple(chunk.shape)}')
                sink.add_(chunk.to(sink.dtype))
        elif linear.bias is not None:
            linear.bias.add_(shift.to(linear.bias.dtype))
        elif bool(shift.abs().max() > 0):
            where = f'{type(module).__name__}.{self.linear_path}'
            sinks = ([n for n in self.bias_sink if n]
                     if self.bias_sink else [])
            raise ValueError(
                f'cannot fold an adapter with a non-zero shift into {where}: '
                'it has no bias' +
                (f' and the module has no {" / ".join(sinks)} (built without '
                 'qkv bias?)' if sinks else ''))
        module.train(self.training)
        return module

    def extra_repr(self) -> str:
        return f'{type(self.module).__name__} via {self.linear_path}'
