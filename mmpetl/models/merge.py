# Copyright (c) mmpetl contributors. All rights reserved.
"""Merge: fold every adapted site of a model into its stock module.

The model side of re-parameterization, used by
:mod:`mmpetl.apis.reparam`,
:class:`~mmpetl.engine.hooks.ReparamCheckpointHook` and
:class:`~mmpetl.apis.serving.AdapterSwitcher`.
"""
from typing import List, Tuple

from torch import nn

from .adapter_backbone import FrozenBackbone
from .petl import AdaptedSite


def named_wrappers(model: nn.Module) -> List[Tuple[str, FrozenBackbone]]:
    """Every mmpetl wrapper in ``model`` with its module path, outermost
    first (``''`` when ``model`` is one)."""
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, FrozenBackbone)]


def merge_blockers(model: nn.Module) -> List[str]:
    """Why ``model`` cannot be folded into the stock model: one line per
    blocker, from every mmpetl wrapper in it
    (:meth:`~mmpetl.models.FrozenBackbone.merge_blockers`: a site that does
    not fold, a trainable module on no site, E3VA's highway). Empty when it
    folds."""
    return [
        f'{name}.{blocker}' if name else blocker
        for name, wrapper in named_wrappers(model)
        for blocker in wrapper.merge_blockers()
    ]


def merge_adapters(model: nn.Module) -> nn.Module:
    """Fold every adapted site of ``model`` into its stock module and
    unwrap every mmpetl backbone wrapper, in place.

    Returns the merged model (a different object only when ``model`` itself
    is a wrapper). Parameter-selection methods (BitFit, LN-tuning) have
    nothing to fold: their tuned parameters are stock parameters.

    Raises:
        ValueError: If the model cannot be folded (see
            :func:`merge_blockers`; the model is left unchanged), or naming
            the site whose fold fails.
    """
    blocked = merge_blockers(model)
    if blocked:
        raise ValueError(f'{len(blocked)} part(s) of the model cannot be '
                         f'folded; {blocked[0]}')
    for path, module in list(model.named_modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, AdaptedSite):
                try:
                    setattr(module, name, child.merged())
                except ValueError as e:
                    where = '.'.join(p for p in (path, name) if p)
                    raise ValueError(f'{where}: {e}') from e
    if isinstance(model, FrozenBackbone):
        return model.backbone
    for module in list(model.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, FrozenBackbone):
                setattr(module, name, child.backbone)
    return model


def trained_state_keys(model: nn.Module) -> List[str]:
    """State-dict keys of ``model`` that its mmpetl wrappers train: adapters
    and selected stock parameters in their backbones, modules they own
    (ARC's shared projections, FacT's factors)."""
    keys = []
    for name, wrapper in named_wrappers(model):
        frozen = set(wrapper.frozen_state_keys())
        prefix = f'{name}.' if name else ''
        keys += [
            prefix + key for key in wrapper.state_dict() if key not in frozen
        ]
    return keys


__all__ = [
    'named_wrappers', 'merge_blockers', 'merge_adapters', 'trained_state_keys'
]
