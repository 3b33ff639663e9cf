# Copyright (c) mmpetl contributors. All rights reserved.
"""The wrapper's settings, recorded in every adapter checkpoint as data.

peft stores ``adapter_config.json`` beside its weights so that one call
rebuilds the model; mmpetl records the same in the checkpoint itself: each
:class:`~mmpetl.FrozenBackbone` writes, in its state dict's metadata (next
to the backbone fingerprint, :mod:`mmpetl.fileio.fingerprint`), under
:data:`ADAPTER_CONFIG_KEY`::

    dict(format=1,
         type='mmpetl.LoRABackbone',            # the registered wrapper
         args=dict(rank=8, sites=['qkv'], ...),  # its arguments, not backbone
         sites=['layers.0.attn.qkv', ...],       # the adapted modules
         backbone=dict(type='mmpretrain.VisionTransformer',
                       fingerprint=dict(digest='...', pretrained='...')),
         mmpetl='<version>')

Only plain data is written and accepted (``str``, ``int``, ``float``,
``bool``, ``None``, lists, dicts with ``str`` keys): the record is read from
files that may come from anyone, so :func:`parse_adapter_config` accepts no
type but a registered mmpetl wrapper, and no argument its ``__init__`` does
not name. A wrapper built with an argument that is not plain data (a
module, a function) records why instead of its arguments, and loading it
by its record says so.
"""
import inspect
from typing import Any, Dict, List, Optional, Tuple

from torch import nn

from mmpetl.registry import MODELS
from mmpetl.fileio.errors import CheckpointError
from mmpetl.version import __version__

#: Key of the wrapper's settings in its state-dict metadata.
ADAPTER_CONFIG_KEY = 'adapter_config'
#: Version of the record's layout.
ADAPTER_CONFIG_FORMAT = 1
#: Arguments not recorded: the backbone is given when loading.
_NOT_RECORDED = ('self', 'backbone')


class AdapterConfigError(CheckpointError):
    """An adapter checkpoint's recorded settings cannot be used."""


def init_arguments(cls: type, args: tuple, kwargs: dict) -> Dict[str, Any]:
    """The arguments of ``cls(*args, **kwargs)`` by name, defaults filled in
    and ``**kwargs`` flattened, without ``backbone``; ``{}`` when they do not
    bind (the call itself then fails)."""
    signature = inspect.signature(cls.__init__)
    try:
        bound = signature.bind(None, *args, **kwargs)
    except TypeError:
        return {}
    bound.apply_defaults()
    arguments = {}
    for name, value in bound.arguments.items():
        kind = signature.parameters[name].kind
        if kind is inspect.Parameter.VAR_KEYWORD:
            arguments.update(value)
        elif name not in _NOT_RECORDED:
            arguments[name] = value
    return arguments


def as_data(value: Any, where: str) -> Any:
    """``value`` as plain data (tuples become lists), or raise
    :class:`AdapterConfigError` naming ``where`` it is not."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [as_data(v, f'{where}[{i}]') for i, v in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise AdapterConfigError(f'{where} has a key that is not a str')
        return {k: as_data(v, f'{where}.{k}') for k, v in value.items()}
    raise AdapterConfigError(
        f'{where} is a {type(value).__name__}, not plain data (str, int, '
        'float, bool, None, list, dict)')


def registered_name(module: nn.Module) -> str:
    """``'<package>.<ClassName>'`` of a module's class (its registry name
    as configs write it, e.g. ``'mmpretrain.VisionTransformer'``)."""
    cls = type(module)
    return f'{cls.__module__.partition(".")[0]}.{cls.__name__}'


def adapter_config(wrapper: nn.Module) -> Dict[str, Any]:
    """The record of ``wrapper`` (a :class:`~mmpetl.FrozenBackbone`) that
    its checkpoints carry (see the module docstring)."""
    fingerprint = wrapper.backbone_fingerprint()
    record = dict(
        format=ADAPTER_CONFIG_FORMAT,
        type=f'mmpetl.{type(wrapper).__name__}',
        sites=site_paths(wrapper),
        backbone=dict(type=registered_name(wrapper.backbone),
                      fingerprint=dict(fingerprint._asdict())),
        mmpetl=__version__)
    try:
        record['args'] = as_data(
            getattr(wrapper, '_adapter_arguments', {}), 'argument')
    except AdapterConfigError as e:
        record['unrecorded'] = f'{type(wrapper).__name__} {e}'
    return record


def record_adapter_config(module, state_dict, prefix, local_metadata):
    """State-dict hook of every wrapper: write its record."""
    local_metadata[ADAPTER_CONFIG_KEY] = adapter_config(module)


def wrapper_class(name: Any) -> type:
    """The registered mmpetl wrapper class called ``name``, or raise."""
    from .adapter_backbone import FrozenBackbone
    if not isinstance(name, str) or not name.startswith('mmpetl.'):
        raise AdapterConfigError(
            f'type {name!r} is not an mmpetl wrapper (mmpetl.<Name>Backbone)')
    cls = MODELS.get(name)
    if not (inspect.isclass(cls) and issubclass(cls, FrozenBackbone)):
        raise AdapterConfigError(
            f'type {name!r} is not a registered mmpetl wrapper')
    return cls


def accepted_arguments(cls: type) -> set:
    """The keyword arguments ``cls(...)`` takes by name: those of its
    ``__init__`` and, through ``**kwargs``, of its bases'."""
    names = set()
    for klass in cls.__mro__:
        if '__init__' not in vars(klass):
            continue
        parameters = inspect.signature(klass.__init__).parameters.values()
        names |= {p.name for p in parameters
                  if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
        if not any(p.kind is p.VAR_KEYWORD for p in parameters):
            break
    return names


def parse_adapter_config(record: Any) -> Tuple[type, Dict[str, Any],
                                               Dict[str, Any]]:
    """Check a record read from a file.

    Returns:
        tuple: The wrapper class, its keyword arguments (without
        ``backbone``), and the record.

    Raises:
        AdapterConfigError: In one line, for anything but a record of a
            registered wrapper with plain-data arguments that its
            ``__init__`` takes.
    """
    if not isinstance(record, dict):
        raise AdapterConfigError(
            f'the adapter config is a {type(record).__name__}, not a dict')
    record = as_data(record, 'the adapter config')
    if record.get('format') != ADAPTER_CONFIG_FORMAT:
        raise AdapterConfigError(
            f'adapter config format {record.get("format")!r} is not '
            f'{ADAPTER_CONFIG_FORMAT}; load it with the mmpetl that wrote it')
    cls = wrapper_class(record.get('type'))
    if 'unrecorded' in record:
        raise AdapterConfigError(
            f'the settings were not recorded ({record["unrecorded"]}); build '
            'the wrapper with its config and load the file into it')
    args = record.get('args')
    if not isinstance(args, dict):
        raise AdapterConfigError('the adapter config has no args dict')
    accepted = accepted_arguments(cls)
    for name in args:
        if name in _NOT_RECORDED or name not in accepted:
            raise AdapterConfigError(
                f'{cls.__name__} takes no argument {name!r}')
    for key in ('sites', ):
        if not isinstance(record.get(key), list):
            raise AdapterConfigError(f'the adapter config has no {key} list')
    backbone = record.get('backbone')
    if not isinstance(backbone, dict) or not isinstance(
            backbone.get('type'), str):
        raise AdapterConfigError('the adapter config has no backbone type')
    return cls, args, record


def find_adapter_configs(metadata: Optional[dict]) -> Dict[str, dict]:
    """``{module prefix: record}`` of every wrapper record in a state
    dict's metadata (``''`` for a bare wrapper's state dict)."""
    return {
        prefix: entry[ADAPTER_CONFIG_KEY]
        for prefix, entry in (metadata or {}).items()
        if isinstance(entry, dict) and ADAPTER_CONFIG_KEY in entry
    }


def site_paths(wrapper: nn.Module) -> List[str]:
    """The adapted modules' paths in ``wrapper.backbone``, sorted."""
    from .petl import adapted_sites
    return sorted(adapted_sites(wrapper.backbone))


__all__ = [
    'ADAPTER_CONFIG_KEY', 'ADAPTER_CONFIG_FORMAT', 'AdapterConfigError',
    'accepted_arguments', 'adapter_config', 'as_data', 'find_adapter_configs', 'init_arguments',
    'parse_adapter_config', 'record_adapter_config', 'registered_name',
    'site_paths', 'wrapper_class'
]
