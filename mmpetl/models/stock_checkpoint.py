# Copyright (c) mmpetl contributors. All rights reserved.
"""The stock form of an adapter model: its config without mmpetl
(:func:`stock_config`) and its merged checkpoint (:func:`save_merged`),
written the same way by ``tools/reparam.py``
(:func:`mmpetl.apis.reparam.reparameterize_checkpoint`) and
:class:`~mmpetl.engine.hooks.ReparamCheckpointHook`."""
import copy
from contextlib import ExitStack
from typing import Any, Iterable, List, Optional

import torch
from mmengine.config import Config

from ..fileio.outputs import atomic_output, write_errors
from ..fileio.state_dicts import check_finite
from ..registry import MODELS
from .adapter_backbone import FrozenBackbone

#: Checkpoint meta key under which mmpetl records what it did.
META_KEY = 'mmpetl'


def is_merged_checkpoint(checkpoint: dict) -> bool:
    """Whether ``checkpoint`` was written by mmpetl's merge."""
    meta = checkpoint.get('meta') or {}
    return bool(meta.get(META_KEY, {}).get('merged'))


def _wrapper_class(cfg: Any) -> Optional[type]:
    """The mmpetl wrapper class named by a model config dict, if any."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        return None
    cls = cfg['type']
    if isinstance(cls, str):
        scope, _, name = cls.rpartition('.')
        if scope != 'mmpetl':
            return None
        cls = MODELS.get(name)
    if isinstance(cls, type) and issubclass(cls, FrozenBackbone):
        return cls
    return None


def _walk_configs(cfg: Any) -> Iterable[dict]:
    if isinstance(cfg, dict):
        yield cfg
        for value in cfg.values():
            yield from _walk_configs(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            yield from _walk_configs(value)


def adapter_wrappers_in_config(cfg: Config) -> List[type]:
    """Classes of the PETL wrappers that train something inside their
    backbone (not the plain FrozenBackbone of a linear probe) that
    ``cfg.model`` uses."""
    classes = [_wrapper_class(c) for c in _walk_configs(cfg.get('model'))]
    return [c for c in classes if c and c is not FrozenBackbone]


def _unwrap(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        if _wrapper_class(cfg) is not None:
            return _unwrap(cfg['backbone'])
        return type(cfg)({k: _unwrap(v) for k, v in cfg.items()})
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(_unwrap(v) for v in cfg)
    return cfg


def _is_mmpetl_type(cfg: Any) -> bool:
    t = cfg.get('type') if isinstance(cfg, dict) else None
    return (isinstance(t, str) and t.startswith('mmpetl.')) or (
        isinstance(t, type) and t.__module__.startswith('mmpetl'))


def stock_config(cfg: Config) -> Config:
    """The config of the merged model: every mmpetl backbone wrapper
    replaced by the stock backbone it wraps, and mmpetl hooks removed, so
    the stock toolboxes run it without mmpetl."""
    stock = copy.deepcopy(cfg._cfg_dict.to_dict())
    stock['model'] = _unwrap(stock['model'])
    if stock.get('custom_hooks'):
        stock['custom_hooks'] = [
            h for h in stock['custom_hooks'] if not _is_mmpetl_type(h)
        ]
    return Config(stock)


def save_merged(state_dict: dict,
                cfg: Config,
                out_checkpoint: str,
                out_config: Optional[str] = None,
                source: str = '',
                adapters: int = 0,
                meta: Optional[dict] = None) -> Config:
    """Write a merged model's ``state_dict`` as a stock checkpoint (and
    with ``out_config``, the stock config), both atomically.

    The checkpoint's ``meta`` is ``meta`` (e.g. the runner's ``epoch``,
    ``iter``, ``dataset_meta``) with ``cfg``, the stock config's text, and
    ``meta['mmpetl'] = dict(merged=True, source=source,
    adapters=adapters)``: what was merged, from where, and how many sites.

    Returns:
        Config: The stock config (:func:`stock_config` of ``cfg``).

    Raises:
        CheckpointError: ``state_dict`` holds NaN or Inf (training
            diverged); nothing is written.
        OutputError: A write failed; nothing is left under either name.
    """
    check_finite(state_dict, 'the merged model')
    stock = stock_config(cfg)
    meta = dict(meta or {})
    meta[META_KEY] = dict(merged=True, source=source, adapters=adapters)
    meta['cfg'] = stock.pretty_text
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_output(out_checkpoint))
        with write_errors(out_checkpoint):
            torch.save(dict(meta=meta, state_dict=state_dict), tmp)
        if out_config is not None:
            tmp = stack.enter_context(atomic_output(out_config))
            with write_errors(out_config):
                stock.dump(tmp)
    return stock


__all__ = ['META_KEY', 'is_merged_checkpoint', 'adapter_wrappers_in_config',
           'stock_config', 'save_merged']
