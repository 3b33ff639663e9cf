# Copyright (c) mmpetl contributors. All rights reserved.
"""The sites of the methods that do not fold: a non-linear branch beside a
stock module (AdaptFormer) or an adapter after it (Houlsby, Pfeiffer).

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
