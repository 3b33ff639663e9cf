# Copyright (c) mmpetl contributors. All rights reserved.
"""The sites of the methods that do not fold: a non-linear branch beside a
stock module (AdaptFormer: on the module's input, or on the block's residual
stream) or an adapter after it (Houlsby, Pfeiffer).

Both wrap the whole stock module (:class:`~mmpetl.models.ModuleSite`: its
state-dict keys unchanged, the adapter's under ``adapter.``) and say why
they cannot fold in one line naming the method
(:meth:`~mmpetl.models.AdaptedSite.not_mergeable_reason`), which every
consumer reports as it is: :func:`~mmpetl.models.merge.merge_adapters` and
``tools/reparam.py`` refuse the model, :class:`ReparamCheckpointHook` warns
and writes nothing, :class:`~mmpetl.apis.serving.AdapterSwitcher` refuses it.
The first-step site check still proves that every adapter runs; there is no
fold to check.
"""
from torch import nn

from .adapted_module import ModuleSite
from .petl import PETLModule


class NonFoldableSite(ModuleSite):
    """Base of the sites that cannot fold into their stock module.

    Args:
        module (nn.Module): The stock module. Not copied.
        adapter (PETLModule): The site's adapter.
        reason (str): Why the site does not fold, in one line naming the
            method, e.g. ``"AdaptFormer's branch is non-linear (ReLU) and
            parallel to the MLP: it does not fold"``.
    """

    fold_form = 'not mergeable'

    def __init__(self, module: nn.Module, adapter: PETLModule, reason: str):
        if not reason or '\n' in reason:
            raise ValueError('a non-foldable site needs its reason in one '
                             f'line, not {reason!r}')
        super().__init__(module, adapter)
        self.reason = reason

    def not_mergeable_reason(self) -> str:
        return self.reason

    def merged(self) -> nn.Module:
        raise ValueError(self.reason)

    def describe_fold(self) -> str:
        return f'does not fold ({self.reason})'


class ParallelSite(NonFoldableSite):
    """A stock module with a branch beside it on the same input.

    ``forward(x, *args, **kwargs) = module(x, *args, **kwargs) + a(x)``: the
    branch ``a`` takes the module's first argument (for a block's FFN, the
    normed tokens; its ``identity=`` residual is the FFN's own business).

    Shapes:
        ``x``: (..., C_in); output: the module's, (..., C_out), which ``a``
        must match.
    """

    def forward(self, x, *args, **kwargs):
        return self.module(x, *args, **kwargs) + self.adapter(x)


class StreamParallelSite(NonFoldableSite):
    """A stock FFN with a branch beside it that reads the block's residual
    stream (AdaptFormer's reference input) rather than the FFN's input.

    ``forward(h, *args, **kwargs) = module(h, *args, **kwargs) + a(x)``,
    where ``x`` is the latest input of ``stream_module``: the norm in front
    of the FFN in a pre-norm block (``h = LN(x)``), the FFN itself in a
    post-norm block (``h = x``). A forward pre-hook on ``stream_module``
    keeps ``x`` until the FFN runs (the norm runs first; a norm the block
    runs twice, as DeiT3's ``ln1``, is read at its last call before the
    FFN); the FFN runs first, so the FFN itself may be ``stream_module``.

    Shapes:
        ``x``: (..., C); output: the module's, (..., C).

    Args:
        module (nn.Module): The stock FFN. Not copied.
        adapter (PETLModule): The branch.
        reason (str): Why the site does not fold, in one line.
        stream_module (nn.Module): The module whose input is the stream.
    """

    def __init__(self, module: nn.Module, adapter: PETLModule, reason: str,
                 stream_module: nn.Module):
        super().__init__(module, adapter, reason)
        self._stream = None
        stream_module.register_forward_pre_hook(self._keep_stream)

    def _keep_stream(self, module: nn.Module, args: tuple) -> None:
        self._stream = args[0]

    def forward(self, x, *args, **kwargs):
        out = self.module(x, *args, **kwargs)
        stream, self._stream = self._stream, None
        if stream is None:
            raise RuntimeError(
                'a branch reads the residual stream, but the module whose '
                "input it is (site kind 'stream') did not run before the "
                "FFN; name that module with targets=dict(stream=regex) or "
                "use adapter_input='norm'")
        return out + self.adapter(stream)


class SequentialSite(NonFoldableSite):
    """A stock module with an adapter on its output.

    ``forward(*args, **kwargs) = a(module(*args, **kwargs))``; ``a`` keeps
    its own skip connection where the method has one
    (``a(h) = h + s f(h)``).

    Shapes:
        output: the module's, (..., C_out), the adapter's width.
    """

    def forward(self, *args, **kwargs):
        return self.adapter(self.module(*args, **kwargs))
