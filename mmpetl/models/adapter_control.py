# Copyright (c) mmpetl contributors. All rights reserved.
"""Turning a wrapper's adapters off, taking them out, and switching between
several named sets of them: the model side of
:class:`AdapterControlMixin`, a base of every
:class:`~mmpetl.FrozenBackbone`: ``disable_adapters()``, ``unload()``,
``add_adapter()`` and ``set_adapter()``.

*Disabled* means the stock backbone's output, exactly, for every method:

- each adapted site computes its stock module, with the same tensors (a
  site that adopted a linear runs a linear of the stock class holding the
  site's own ``weight`` and ``bias``; a site wrapping a stock module runs
  that module; ARC's reference Swin placement gets the block's ``norm2``
  back);
- the forward hooks that mmpetl put on backbone modules (VPT's prompt
  insertion, E3VA's taps, AdaptFormer's stream reader) are set aside;
- the wrapper's own forward (E3VA's highway) is the backbone's;
- stock parameters a method trains (BitFit's biases, LN-tuning's norms) hold
  their pre-trained values, kept by the wrapper when it was built.

:func:`unload` does the same for good and returns the stock backbone.

Named adapters are several sets of the tensors the wrapper trains (its
state-dict entries outside the frozen backbone), for one method and one
set of sites. The live modules stay in place; switching points their
parameters at another set's tensors (no copy, no fold), so it works for
the methods that do not fold as for those that do, and an optimizer built
on the parameters trains whichever set is active (its state, e.g. momentum,
is shared: build one per set to train several). To serve several folded
tasks at stock speed, see :class:`~mmpetl.apis.serving.AdapterSwitcher`.
"""
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from torch import Tensor, nn

from mmpetl.utils.errors import UnknownNameError
from .adapted_module import ModuleSite
from .adapter_config import adapter_config, init_arguments
from .petl import adapted_sites

#: The name of the adapter set a wrapper is built with.
DEFAULT_ADAPTER = 'default'

#: The forward-hook tables of ``nn.Module`` that adapters register into.
_HOOK_TABLES = ('_forward_pre_hooks', '_forward_hooks')

Swap = Tuple[nn.Module, str, nn.Module]


def _stock_linear_sharing(site: nn.Linear) -> nn.Linear:
    """A linear of the stock class holding ``site``'s own weight and bias
    (the same parameters, no copy)."""
    linear = torch.nn.utils.skip_init(
        site.linear_type, site.in_features, site.out_features,
        bias=site.bias is not None, device='meta')
    linear.weight = site.weight
    if site.bias is not None:
        linear.bias = site.bias
    return linear.train(site.training)


def stock_swaps(wrapper: nn.Module) -> List[Swap]:
    """``(parent, attribute, stock module)`` per module that an adapted
    site replaced in ``wrapper.backbone``; the stock modules hold the
    site's own tensors."""
    from .adapters.arc import ResidualStreamFFN
    swaps = []
    for path, site in adapted_sites(wrapper.backbone).items():
        parent_path, _, name = path.rpartition('.')
        parent = wrapper.backbone.get_submodule(parent_path)
        if isinstance(site, nn.Linear):  # AdaptedLinear, DeltaLinear
            swaps.append((parent, name, _stock_linear_sharing(site)))
        elif isinstance(site, ModuleSite):
            swaps.append((parent, name, site.module))
        elif isinstance(site, ResidualStreamFFN):
            swaps += [(parent, name, site.ffn), (parent, 'norm2', site.norm)]
        else:
            raise TypeError(f'{path}: no stock module known for a '
                            f'{type(site).__name__} site')
    return swaps


def _adapter_hook(hook) -> bool:
    """Whether a forward hook is one an mmpetl adapter registered."""
    func = getattr(hook, 'func', hook)  # functools.partial
    return str(getattr(func, '__module__', '')).startswith('mmpetl.')


def _adapter_hooks(backbone: nn.Module) -> List[Tuple[dict, object, object]]:
    """``(table, id, hook)`` of every adapter hook on ``backbone``'s
    modules."""
    return [(table, key, hook) for module in backbone.modules()
            for table in (getattr(module, name) for name in _HOOK_TABLES)
            for key, hook in list(table.items()) if _adapter_hook(hook)]


def stock_selected(wrapper: nn.Module) -> Dict[str, Tensor]:
    """Pre-trained values of the stock parameters ``wrapper`` trains, as
    kept when it was built."""
    return getattr(wrapper, '_stock_selected', {})


def keep_stock_selected(wrapper: nn.Module) -> None:
    """Keep a copy of the stock parameters ``wrapper`` trains (BitFit,
    LN-tuning), for :func:`disabled` and :func:`unload`. Called once the
    backbone holds its pre-trained weights."""
    wrapper._stock_selected = {
        name: param.detach().clone()
        for name, param in wrapper.selected_parameters().items()
    }


@contextmanager
def disabled(wrapper: nn.Module) -> Iterator[nn.Module]:
    """Context in which ``wrapper`` computes the stock backbone exactly
    (see the module docstring); everything is put back on exit."""
    swaps = stock_swaps(wrapper)
    restore = [(parent, name, getattr(parent, name))
               for parent, name, _ in swaps]
    hooks = _adapter_hooks(wrapper.backbone)
    selected = wrapper.selected_parameters()
    stock = stock_selected(wrapper)
    trained = {name: param.data for name, param in selected.items()}
    try:
        for parent, name, module in swaps:
            setattr(parent, name, module)
        for table, key, _ in hooks:
            del table[key]
        for name, param in selected.items():
            param.data = stock[name].to(param.device, param.dtype)
        wrapper.__dict__['forward'] = wrapper.backbone
        yield wrapper
    finally:
        wrapper.__dict__.pop('forward', None)
        for name, param in selected.items():
            param.data = trained[name]
        for table, key, hook in hooks:
            table[key] = hook
        for parent, name, module in restore:
            setattr(parent, name, module)


def _unloaded(*args, **kwargs):
    raise RuntimeError('this mmpetl wrapper was unloaded: use the stock '
                       'backbone that unload() returned')


@torch.no_grad()
def unload(wrapper: nn.Module) -> nn.Module:
    """Take every adapter out of ``wrapper`` without folding and return its
    stock backbone, with the pre-trained values of any stock parameter the
    method trained, every parameter trainable again (as built), and the
    stock state-dict keys. The wrapper is spent: calling it raises."""
    backbone = wrapper.backbone
    for parent, name, module in stock_swaps(wrapper):
        setattr(parent, name, module)
    for table, key, _ in _adapter_hooks(backbone):
        del table[key]
    stock = stock_selected(wrapper)
    for name, param in wrapper.selected_parameters().items():
        param.copy_(stock[name])
    backbone.requires_grad_(True)
    wrapper.__dict__['forward'] = _unloaded
    return backbone


# Named adapters.


def adapter_tensors(wrapper: nn.Module) -> Dict[str, Tensor]:
    """The live tensors ``wrapper`` trains, by state-dict key (relative to
    the wrapper): its entries outside the frozen backbone."""
    frozen = set(wrapper.frozen_state_keys())
    state = nn.Module.state_dict(wrapper, keep_vars=True)
    return {k: v for k, v in state.items() if k not in frozen}


def active_adapter(wrapper: nn.Module) -> str:
    return getattr(wrapper, '_active_adapter', DEFAULT_ADAPTER)


def _slots(wrapper: nn.Module) -> Dict[str, Dict[str, Tensor]]:
    """The inactive adapter sets, by name (created empty)."""
    if '_adapter_slots' not in wrapper.__dict__:
        wrapper._adapter_slots = {}
    return wrapper._adapter_slots


def adapter_names(wrapper: nn.Module) -> List[str]:
    return [active_adapter(wrapper), *_slots(wrapper)]


def add_adapter(wrapper: nn.Module, name: str,
                state_dict: Optional[Dict[str, Tensor]] = None) -> None:
    """Add the adapter set ``name``: a copy of the active set's tensors, or
    those of ``state_dict`` (keys relative to the wrapper, exactly the
    trained ones, same shapes)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f'an adapter name is a non-empty str, not {name!r}')
    if name in adapter_names(wrapper):
        raise ValueError(f'adapter {name!r} exists; names: '
                         f'{adapter_names(wrapper)}')
    live = adapter_tensors(wrapper)
    source = live if state_dict is None else state_dict
    missing = sorted(live.keys() - source.keys())
    unexpected = sorted(source.keys() - live.keys())
    if missing or unexpected:
        raise ValueError(
            f'adapter {name!r} does not match {type(wrapper).__name__}: '
            f'{len(missing)} missing keys {missing[:2]}, {len(unexpected)} '
            f'unexpected keys {unexpected[:2]}')
    slot = {}
    for key, tensor in live.items():
        value = source[key]
        if value.shape != tensor.shape:
            raise ValueError(f'adapter {name!r}: {key} has shape '
                             f'{tuple(value.shape)}, not {tuple(tensor.shape)}')
        slot[key] = value.detach().to(tensor.device, tensor.dtype,
                                      copy=True)
    _slots(wrapper)[name] = slot


@torch.no_grad()
def set_adapter(wrapper: nn.Module, name: str) -> None:
    """Make ``name`` the active adapter set: the live parameters and
    buffers point at its tensors (the set active until now keeps its
    own)."""
    current = active_adapter(wrapper)
    if name == current:
        return
    slots = _slots(wrapper)
    if name not in slots:
        raise UnknownNameError(f'no adapter {name!r}; names: '
                               f'{adapter_names(wrapper)}')
    live = adapter_tensors(wrapper)
    incoming = slots.pop(name)
    slots[current] = {key: tensor.data for key, tensor in live.items()}
    for key, tensor in live.items():
        tensor.data = incoming[key].to(tensor.device, tensor.dtype)
    wrapper._active_adapter = name


def delete_adapter(wrapper: nn.Module, name: str) -> None:
    """Drop an inactive adapter set."""
    if name == active_adapter(wrapper):
        raise ValueError(f'adapter {name!r} is active; set another first')
    if _slots(wrapper).pop(name, None) is None:
        raise UnknownNameError(f'no adapter {name!r}; names: '
                               f'{adapter_names(wrapper)}')


class AdapterControlMixin:
    """What every :class:`~mmpetl.FrozenBackbone` adds to a stock backbone
    besides its adapters: the settings its checkpoints record
    (:meth:`adapter_config`), turning the adapters off
    (:meth:`disable_adapters`) or out (:meth:`unload`), and named adapter
    sets (:meth:`add_adapter`, :meth:`set_adapter`); see the module
    docstring."""

    def __new__(cls, *args, **kwargs):
        wrapper = super().__new__(cls)
        # The settings every checkpoint of it records (adapter_config()).
        object.__setattr__(wrapper, '_adapter_arguments',
                           init_arguments(cls, args, kwargs))
        return wrapper

    def adapter_config(self) -> Dict[str, Any]:
        """The settings its checkpoints record, as plain data: method type,
        arguments, adapted sites, backbone type and fingerprint (see
        :mod:`~mmpetl.models.adapter_config`); what
        :func:`mmpetl.load_adapter` rebuilds the model from."""
        return adapter_config(self)

    def disable_adapters(self):
        """Context in which the wrapper computes the stock backbone's
        output exactly
        (:func:`~mmpetl.models.adapter_control.disabled`)::

            with wrapper.disable_adapters():
                stock_out = wrapper(x)
        """
        return disabled(self)

    def unload(self) -> nn.Module:
        """Remove every adapter without folding and return the stock
        backbone (:func:`~mmpetl.models.adapter_control.unload`); the
        wrapper is spent."""
        return unload(self)

    def add_adapter(self, name: str,
                    state_dict: Optional[Dict[str, Tensor]] = None) -> None:
        """Add a named adapter set: a copy of the active one, or the
        trained entries of ``state_dict`` (keys relative to the wrapper).
        From a file: :func:`mmpetl.load_adapter` with ``adapter_name``."""
        add_adapter(self, name, state_dict)

    def set_adapter(self, name: str) -> None:
        """Make the named adapter set the live one (its tensors, no
        copy)."""
        set_adapter(self, name)

    def delete_adapter(self, name: str) -> None:
        """Drop an inactive named adapter set."""
        delete_adapter(self, name)

    @property
    def active_adapter(self) -> str:
        """The name of the live adapter set (``'default'`` as built)."""
        return active_adapter(self)

    @property
    def adapter_names(self) -> List[str]:
        """The names of the adapter sets, the active one first."""
        return adapter_names(self)


__all__ = [
    'AdapterControlMixin', 'DEFAULT_ADAPTER', 'active_adapter', 'adapter_names', 'adapter_tensors',
    'add_adapter', 'delete_adapter', 'disabled', 'keep_stock_selected',
    'set_adapter', 'stock_selected', 'stock_swaps', 'unload'
]
