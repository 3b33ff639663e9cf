# Copyright (c) mmpetl contributors. All rights reserved.
"""Rebuild an adapter model from the stock backbone and one file.

Every adapter checkpoint records its wrapper's settings
(:mod:`mmpetl.models.adapter_config`), so, as peft's
``PeftModel.from_pretrained``, one call gives the trained model back::

    from mmpetl import load_adapter
    wrapper = load_adapter('work_dirs/lora_dtd/epoch_10.pth',
                           classifier.backbone)   # or the backbone's config
    classifier.backbone = wrapper

The same from a config (the file's head is loaded as usual, e.g. with
``load_from``)::

    model = dict(type='ImageClassifier',
                 backbone=dict(type='mmpetl.load_adapter',
                               path='work_dirs/lora_dtd/epoch_10.pth',
                               backbone=dict(type='VisionTransformer', ...)),
                 ...)

And into a model that has its adapters already, as a second named set
(``set_adapter(name)`` switches)::

    load_adapter('dtd.pth', wrapper, adapter_name='dtd')
"""
from collections import OrderedDict
from typing import Dict, Optional, Union

from torch import nn

from ..fileio.errors import CheckpointError
from ..fileio.safe_load import load_checkpoint_file
from ..fileio.state_dicts import load_matching_state_dict, model_state_dict
from ..fileio.fingerprint import BackboneFingerprint, check_fingerprint
from ..models import FrozenBackbone
from ..models.adapter_config import (AdapterConfigError, as_data,
                                     find_adapter_configs,
                                     parse_adapter_config, site_paths)
from ..models.adapter_control import adapter_tensors
from ..registry import MODELS


def _wrapper_state(state: 'OrderedDict', prefix: str) -> 'OrderedDict':
    """The entries (and metadata) of the wrapper at ``prefix``, with keys
    relative to it."""
    head = f'{prefix}.' if prefix else ''
    sub = OrderedDict((k[len(head):], v) for k, v in state.items()
                      if k.startswith(head))
    sub._metadata = OrderedDict(
        ('' if k == prefix else k[len(head):], v)
        for k, v in getattr(state, '_metadata', {}).items()
        if k == prefix or k.startswith(head))
    return sub


def _backbone_type(backbone: Union[dict, nn.Module]) -> str:
    """The class name of a backbone given built or as a config."""
    if isinstance(backbone, nn.Module):
        return type(backbone).__name__
    kind = backbone.get('type') if isinstance(backbone, dict) else None
    if isinstance(kind, type):
        return kind.__name__
    if not isinstance(kind, str):
        raise TypeError('backbone must be a built module or a config dict '
                        f'with a type, not {type(backbone).__name__}')
    return kind.rpartition('.')[2]


def _check_same_settings(wrapper: FrozenBackbone, record: dict,
                         path: str) -> None:
    """Refuse a file whose adapters are not of ``wrapper``'s method, sites
    and backbone, to be added to it as a named set."""
    own = wrapper.adapter_config()
    for key in ('type', 'args', 'sites'):
        if record.get(key) != own.get(key):
            raise AdapterConfigError(
                f'{path}: its adapters differ from the model\'s in {key} '
                f'({record.get(key)!r} vs {own.get(key)!r}); named adapters '
                'share one method and one set of sites')
    fingerprint = record['backbone'].get('fingerprint') or {}
    check_fingerprint(
        BackboneFingerprint(str(fingerprint.get('digest')),
                            fingerprint.get('pretrained')),
        wrapper.backbone_fingerprint())


def load_adapter(path: str,
                 backbone: Union[dict, nn.Module],
                 adapter_name: Optional[str] = None,
                 prefix: Optional[str] = None) -> FrozenBackbone:
    """The adapter model of an adapter checkpoint, on ``backbone``.

    Args:
        path (str): An adapter checkpoint (what training writes: a bare
            wrapper's or a whole model's, e.g. a classifier's).
        backbone (dict | nn.Module): The stock backbone, built (with its
            pre-trained weights) or as its config (built and loaded here);
            or a wrapper of the same settings, to which the file's adapters
            are added as the set ``adapter_name``.
        adapter_name (str, optional): The name of the file's adapter set
            (required when ``backbone`` is a wrapper). Defaults to
            ``'default'``.
        prefix (str, optional): Which wrapper of the file (its module path,
            e.g. ``'backbone'``), when it holds several.

    Returns:
        FrozenBackbone: The wrapper, as trained (or ``backbone`` itself,
        with the set added).

    Raises:
        CheckpointError: In one line, for a file without a recorded
            config (written before mmpetl recorded one, or merged), a
            record that is not of a registered mmpetl wrapper with
            plain-data arguments, another backbone type or other
            pre-trained weights than the file's, or entries that do not
            match.
    """
    state = model_state_dict(load_checkpoint_file(path))
    records = find_adapter_configs(getattr(state, '_metadata', None))
    if not records:
        raise CheckpointError(
            f'{path} records no adapter config (a merged checkpoint, or '
            'written before mmpetl recorded one): build the wrapper with the '
            'config it was trained with and load the file into it')
    if prefix is None and len(records) > 1:
        raise CheckpointError(f'{path} holds {len(records)} wrappers '
                              f'({sorted(records)}): pass prefix=')
    prefix = next(iter(records)) if prefix is None else prefix
    if prefix not in records:
        raise CheckpointError(f'{path} has no wrapper at {prefix!r}; it has '
                              f'{sorted(records)}')
    try:
        cls, args, record = parse_adapter_config(records[prefix])
    except AdapterConfigError as e:
        raise AdapterConfigError(f'{path}: {e}') from None
    sub = _wrapper_state(state, prefix)
    if isinstance(backbone, FrozenBackbone):
        if adapter_name is None:
            raise ValueError('adapter_name is required to add a file\'s '
                             'adapters to a wrapper')
        _check_same_settings(backbone, as_data(record, 'record'), path)
        trained = adapter_tensors(backbone)
        try:
            backbone.add_adapter(
                adapter_name, {k: v for k, v in sub.items() if k in trained})
        except ValueError as e:
            raise AdapterConfigError(f'{path}: {e}') from None
        return backbone
    wanted = record['backbone']['type'].rpartition('.')[2]
    if _backbone_type(backbone) != wanted:
        raise AdapterConfigError(
            f'{path} was trained on a {record["backbone"]["type"]}, not a '
            f'{_backbone_type(backbone)}')
    wrapper = cls(backbone=backbone, **args)
    if site_paths(wrapper) != record['sites']:
        raise AdapterConfigError(
            f'{path}: rebuilt on this backbone, {cls.__name__} adapts '
            f'{len(site_paths(wrapper))} modules, the file '
            f'{len(record["sites"])}: give the backbone config it was '
            'trained on')
    load_matching_state_dict(wrapper, sub, path)
    if adapter_name is not None:
        wrapper._active_adapter = adapter_name
    return wrapper


MODELS.register_module(name='load_adapter', module=load_adapter)


def adapter_records(path: str) -> Dict[str, dict]:
    """``{wrapper prefix: recorded settings}`` of an adapter checkpoint, as
    written (for inspection; :func:`load_adapter` checks them)."""
    state = model_state_dict(load_checkpoint_file(path))
    return find_adapter_configs(getattr(state, '_metadata', None))


__all__ = ['load_adapter', 'adapter_records']
