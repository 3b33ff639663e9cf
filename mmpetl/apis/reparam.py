# Copyright (c) mmpetl contributors. All rights reserved.
"""Re-parameterization: fold adapters into the frozen weights.

The library side of ``tools/reparam.py`` and of
:class:`~mmpetl.engine.hooks.ReparamCheckpointHook`. The result is the *stock*
OpenMMLab model: same modules, same state-dict keys, same parameter count
and FLOPs, loadable with ``strict=True`` into the config without the mmpetl
wrapper.
"""
import copy
import os.path as osp
from contextlib import ExitStack
from typing import Any, Dict, Iterable, List, Optional, Sequence

import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import init_default_scope
from torch import nn

from ..fileio.checkpoint_io import (CheckpointError, atomic_output,
                                    check_finite, check_output_paths,
                                    first_line, load_checkpoint_file,
                                    load_config_file,
                                    load_matching_state_dict,
                                    model_state_dict, run_input_files)
from ..models import AdaptedSite, FrozenBackbone
from ..models.merge import (merge_adapters, merge_blockers, named_wrappers,
                            trained_state_keys)
from ..models.site_check import output_tensors, relative_difference
from ..registry import MODELS

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


def build_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` in the config's default scope."""
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    return ROOT_MODELS.build(cfg.model)


def example_inputs(backbone: nn.Module,
                   shape: Optional[Sequence[int]] = None,
                   batch_size: int = 2) -> torch.Tensor:
    """A random input batch for ``backbone``.

    Without ``shape``: the channels are those of the first convolution. The
    spatial size is the patch embedding's ``init_input_size``, else, for a
    backbone with a ``grid_size`` of patches, that grid times the stem's
    stride, else 224x224. A Conv3d stem (video, ``(N, C, T, H, W)``) gets the
    clip length its position embedding was built for (``pos_embed`` tokens
    per ``grid_size`` times the stem's temporal stride), else 8 frames.
    """
    conv = next((m for m in backbone.modules()
                 if isinstance(m, (nn.Conv2d, nn.Conv3d))), None)
    if shape is None:
        channels = conv.in_channels if conv is not None else 3
        grid = getattr(backbone, 'grid_size', None)
        size = getattr(getattr(backbone, 'patch_embed', None),
                       'init_input_size', None)
        if size is None and grid is not None and conv is not None:
            size = tuple(g * s for g, s in zip(grid, conv.stride[-2:]))
        frames = ()
        if isinstance(conv, nn.Conv3d):
            frames = (8, )
            pos_embed = getattr(backbone, 'pos_embed', None)
            if grid is not None and isinstance(pos_embed, torch.Tensor):
                per_frame = grid[0] * grid[1]
                if pos_embed.shape[1] % per_frame == 0:
                    frames = (pos_embed.shape[1] // per_frame *
                              conv.stride[0], )
        shape = (channels, *frames, *(size or (224, 224)))
    generator = torch.Generator().manual_seed(0)
    return torch.randn(batch_size, *shape, generator=generator)


@torch.no_grad()
def max_relative_difference(reference: nn.Module, other: nn.Module,
                            inputs: torch.Tensor) -> float:
    """``max |a - b| / max |a|`` over all output tensors, in eval mode.

    Raises:
        ValueError: If the inputs or any output hold NaN or Inf (no
            difference can be measured then).
    """
    reference.eval()
    other.eval()
    expected, actual = reference(inputs), other(inputs)
    if len(output_tensors(expected)) != len(output_tensors(actual)):
        raise RuntimeError('the two models return different outputs')
    for name, tensors in (('the input', [inputs]),
                          ('the reference output', output_tensors(expected)),
                          ('the compared output', output_tensors(actual))):
        if not all(torch.isfinite(t).all() for t in tensors):
            raise ValueError(f'{name} holds NaN or Inf values')
    return relative_difference(expected, actual)


def reparameterize_checkpoint(config: str,
                              checkpoint: str,
                              out_checkpoint: str,
                              out_config: Optional[str] = None,
                              verify: bool = False,
                              force: bool = False,
                              cfg_options: Optional[dict] = None,
                              verify_shape: Optional[Sequence[int]] = None,
                              tolerance: float = 1e-5) -> Dict[str, Any]:
    """Fold the adapters of an adapter checkpoint into a stock checkpoint.

    Args:
        config (str): The adapter config the checkpoint was trained with.
        checkpoint (str): The adapter checkpoint (read, never modified).
        out_checkpoint (str): Where to write the stock checkpoint.
        out_config (str, optional): Where to write the stock config.
        verify (bool): Run both models on a random batch and raise if their
            backbone outputs differ by more than ``tolerance`` (relative).
        force (bool): Replace existing outputs.
        cfg_options (dict, optional): Overrides merged into the config.
        verify_shape (Sequence[int], optional): Input shape without batch
            for ``verify``; see :func:`example_inputs`.
        tolerance (float): See ``verify``.

    Returns:
        dict: ``adapters`` (number of sites folded), ``selected`` (number
        of tuned stock tensors, BitFit / LN-tuning), ``params`` (stock
        model's parameter count) and, with ``verify``, ``max_rel_diff``.

    Raises:
        CheckpointError: For any unusable input; nothing is written then.
    """
    for path in (config, checkpoint):
        if not osp.isfile(path):
            raise CheckpointError(f'{path} does not exist')
    outputs = [out_checkpoint, out_config]
    check_output_paths(outputs, force, [config, checkpoint])  # cheap first
    cfg = load_config_file(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    check_output_paths(outputs, force,
                       run_input_files(config, cfg) + [checkpoint])
    if not adapter_wrappers_in_config(cfg):
        raise CheckpointError(
            f'config {config} has no adapters to fold: its model uses no '
            'mmpetl adapter backbone (e.g. mmpetl.RepAdapterBackbone)')

    source = load_checkpoint_file(checkpoint)
    if is_merged_checkpoint(source):
        raise CheckpointError(
            f'{checkpoint} is already merged (written by mmpetl reparam); it '
            'loads into the stock config as it is')
    state_dict = model_state_dict(source)
    check_finite(state_dict, f'checkpoint {checkpoint}')

    try:
        model = build_model(cfg)
    except Exception as e:  # e.g. its pre-trained backbone file is missing
        raise CheckpointError(
            f'cannot build the model of {config} ({first_line(e)})')
    blocked = merge_blockers(model)
    if blocked:
        raise CheckpointError(f'{config} cannot be merged: {blocked[0]}')
    trained = set(trained_state_keys(model))
    # Frozen keys, in the wrapped and in the stock layout.
    known = set(model.state_dict()) | {
        f'{name}.{key[len(cut):]}' if name else key[len(cut):]
        for name, wrapper in named_wrappers(model)
        for key in wrapper.frozen_state_keys() for cut in ('', 'backbone.')
    }
    # Keys of another method's adapters: a mismatch, said by the load below.
    if not trained.intersection(state_dict) and known.issuperset(state_dict):
        raise CheckpointError(
            f'{checkpoint} holds no adapter weights for this config '
            '(a stock or already-merged checkpoint?)')
    load_matching_state_dict(model, state_dict, checkpoint)
    model.eval()

    num_adapters = sum(
        isinstance(m, AdaptedSite) for m in model.modules())
    wrappers = [wrapper for _, wrapper in named_wrappers(model)]
    reference = copy.deepcopy(wrappers[0].backbone) if verify else None
    try:
        merged = merge_adapters(model)
    except ValueError as e:  # e.g. a shift into a linear without bias
        raise CheckpointError(f'cannot merge {checkpoint}: {e}')
    report: Dict[str, Any] = dict(
        adapters=num_adapters,
        selected=sum(len(w.selected_parameters()) for w in wrappers),
        params=sum(p.numel() for p in merged.parameters()))
    merged_state = merged.state_dict()
    check_finite(merged_state, 'the merged model')
    if verify:
        merged_backbone = _merged_backbone_like(merged, reference)
        inputs = example_inputs(reference, verify_shape)
        try:
            report['max_rel_diff'] = max_relative_difference(
                reference, merged_backbone, inputs)
        except ValueError as e:
            raise CheckpointError(f'verification failed: {e}')
        if report['max_rel_diff'] > tolerance:
            raise CheckpointError(
                f'verification failed: merged and adapter outputs differ by '
                f'{report["max_rel_diff"]:.3g} relative (> {tolerance:g})')

    stock = stock_config(cfg)
    meta = dict(source.get('meta') or {})
    meta[META_KEY] = dict(
        merged=True, source=checkpoint, adapters=num_adapters)
    meta['cfg'] = stock.pretty_text
    out = dict(meta=meta, state_dict=merged_state)
    with ExitStack() as stack:
        ckpt_tmp = stack.enter_context(atomic_output(out_checkpoint))
        torch.save(out, ckpt_tmp)
        if out_config is not None:
            cfg_tmp = stack.enter_context(atomic_output(out_config))
            stock.dump(cfg_tmp)
    return report


def _merged_backbone_like(merged: nn.Module,
                          reference: nn.Module) -> nn.Module:
    """The module of ``merged`` with the same class as ``reference``."""
    if type(merged) is type(reference):
        return merged
    return next(m for m in merged.modules() if type(m) is type(reference))


__all__ = [
    'stock_config', 'adapter_wrappers_in_config',
    'build_model', 'example_inputs', 'max_relative_difference',
    'reparameterize_checkpoint', 'is_merged_checkpoint', 'CheckpointError',
    'META_KEY'
]
