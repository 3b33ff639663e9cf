# Copyright (c) mmpetl contributors. All rights reserved.
"""Re-parameterization: fold adapters into the frozen weights.

The library side of ``tools/reparam.py``; the files it writes are those of
:func:`mmpetl.models.stock_checkpoint.save_merged`, which
:class:`~mmpetl.engine.hooks.ReparamCheckpointHook` writes too. The result
is the *stock*
OpenMMLab model: same modules, same state-dict keys, same parameter count
and FLOPs, loadable with ``strict=True`` into the config without the mmpetl
wrapper.
"""
import copy
import math
import os.path as osp
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from mmengine.config import Config
from mmengine.registry import MODELS as ROOT_MODELS
from mmengine.registry import init_default_scope
from torch import nn

from ..fileio.configs import load_config_file, run_input_files
from ..fileio.errors import CheckpointError, first_line
from ..fileio.outputs import check_output_paths
from ..fileio.safe_load import load_checkpoint_file
from ..fileio.state_dicts import (check_finite, load_matching_state_dict,
                                  model_state_dict)
from ..models import AdaptedSite
from ..models.merge import (merge_adapters, merge_blockers, named_wrappers,
                            trained_state_keys)
from ..models.site_check import output_tensors, relative_difference
from ..models.stock_checkpoint import (adapter_wrappers_in_config,
                                       is_merged_checkpoint, save_merged)


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
        OutputError: An output is an input, exists without ``force``,
            cannot be written; nothing is written then.
    """
    check_tolerance(tolerance)
    cfg = _read_config(config, checkpoint, [out_checkpoint, out_config],
                       force, cfg_options)
    source, state_dict = _read_adapter_checkpoint(checkpoint)
    model = _load_adapter_model(cfg, config, checkpoint, state_dict)
    wrappers = [wrapper for _, wrapper in named_wrappers(model)]
    reference = copy.deepcopy(wrappers[0].backbone) if verify else None
    num_adapters = sum(isinstance(m, AdaptedSite) for m in model.modules())
    try:
        merged = merge_adapters(model, inplace=True)
    except ValueError as e:  # e.g. a shift into a linear without bias
        raise CheckpointError(f'cannot merge {checkpoint}: {e}')
    report: Dict[str, Any] = dict(
        adapters=num_adapters,
        selected=sum(len(w.selected_parameters()) for w in wrappers),
        params=sum(p.numel() for p in merged.parameters()))
    merged_state = merged.state_dict()
    check_finite(merged_state, 'the merged model')
    if verify:
        report['max_rel_diff'] = _verify_merge(
            reference, _merged_backbone_like(merged, reference),
            verify_shape, tolerance)
    save_merged(merged_state, cfg, out_checkpoint, out_config,
                source=checkpoint, adapters=num_adapters,
                meta=source.get('meta'))
    return report


def check_tolerance(tolerance: float) -> None:
    """A relative tolerance is a finite number > 0."""
    if not (isinstance(tolerance, (int, float))
            and math.isfinite(tolerance) and tolerance > 0):
        raise CheckpointError(f'tolerance {tolerance!r} is not a finite '
                              'number > 0')


def _read_config(config: str, checkpoint: str, outputs: List[Optional[str]],
                 force: bool, cfg_options: Optional[dict]) -> Config:
    """The adapter config with ``cfg_options``, after the outputs were
    checked against every input of the run; it must hold adapters."""
    for path in (config, checkpoint):
        if not osp.isfile(path):
            raise CheckpointError(f'{path} does not exist')
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
    return cfg


def _read_adapter_checkpoint(checkpoint: str) -> Tuple[dict, dict]:
    """The checkpoint and its finite state dict, refused if merged."""
    source = load_checkpoint_file(checkpoint)
    if is_merged_checkpoint(source):
        raise CheckpointError(
            f'{checkpoint} is already merged (written by mmpetl reparam); it '
            'loads into the stock config as it is')
    state_dict = model_state_dict(source)
    check_finite(state_dict, f'checkpoint {checkpoint}')
    return source, state_dict


def _load_adapter_model(cfg: Config, config: str, checkpoint: str,
                        state_dict: dict) -> nn.Module:
    """The model of ``cfg`` with ``state_dict`` loaded strictly, in eval
    mode; refused when it cannot merge or the state dict holds no adapter
    weights of this config."""
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
    return model


def _verify_merge(reference: nn.Module, merged: nn.Module,
                  shape: Optional[Sequence[int]], tolerance: float) -> float:
    """The relative difference of the two backbones on a random batch;
    :class:`CheckpointError` above ``tolerance`` or when not finite."""
    try:
        difference = max_relative_difference(
            reference, merged, example_inputs(reference, shape))
    except ValueError as e:
        raise CheckpointError(f'verification failed: {e}')
    if not difference <= tolerance:
        raise CheckpointError(
            f'verification failed: merged and adapter outputs differ by '
            f'{difference:.3g} relative (> {tolerance:g})')
    return difference


def _merged_backbone_like(merged: nn.Module,
                          reference: nn.Module) -> nn.Module:
    """The module of ``merged`` with the same class as ``reference``."""
    if type(merged) is type(reference):
        return merged
    return next(m for m in merged.modules() if type(m) is type(reference))


__all__ = [
    'build_model', 'example_inputs', 'max_relative_difference',
    'reparameterize_checkpoint', 'check_tolerance'
]
