# Copyright (c) mmpetl contributors. All rights reserved.
"""Reading and writing checkpoint files with clear errors.

Writes are atomic (a temporary file in the destination folder, then
``os.replace``), never touch the inputs, and refuse to replace an existing
file unless asked.
"""
import os
import os.path as osp
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from typing import Dict, Iterator

import torch
from torch import nn

from .compat import load_local_checkpoint


class CheckpointError(ValueError):
    """A checkpoint or config given to a tool is unusable; the message says
    which file and why."""


def first_line(error: BaseException) -> str:
    """``Type: first line of the message``, for one-line error reports."""
    message = str(error).strip().split('\n')[0]
    return f'{type(error).__name__}: {message}'


def load_config_file(path: str):
    """``Config.fromfile`` with a :class:`CheckpointError` on failure."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise CheckpointError(f'config {path} does not exist')
    try:
        return Config.fromfile(path)
    except Exception as e:
        raise CheckpointError(f'cannot read config {path} ({first_line(e)})')


def load_checkpoint_dict(path: str) -> dict:
    """Load the dict that a PyTorch checkpoint file ``path`` holds, of any
    layout.

    Checkpoints written by mmengine hold Python objects besides tensors, so
    this unpickles with ``weights_only=False``: load only trusted files.
    """
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint {path} does not exist')
    try:
        checkpoint = load_local_checkpoint(path, map_location='cpu')
    except Exception as e:  # torch raises many types for foreign files
        raise CheckpointError(
            f'{path} is not a PyTorch checkpoint ({first_line(e)})')
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path} is not a checkpoint: it holds a '
                              f'{type(checkpoint).__name__}, not a dict')
    return checkpoint


def load_checkpoint_file(path: str) -> dict:
    """Load an OpenMMLab checkpoint (``state_dict`` of tensors, or a bare
    state dict) from ``path``; see :func:`load_checkpoint_dict`."""
    checkpoint = load_checkpoint_dict(path)
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, dict) or not state_dict or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f'{path} is not a model checkpoint: it has no '
                              'state_dict of tensors')
    return checkpoint


def model_state_dict(checkpoint: dict) -> 'OrderedDict[str, torch.Tensor]':
    """The checkpoint's state dict, without DDP's ``module.`` prefix."""
    state_dict = checkpoint.get('state_dict', checkpoint)
    return OrderedDict(
        (k[len('module.'):] if k.startswith('module.') else k, v)
        for k, v in state_dict.items())


def load_matching_state_dict(model: nn.Module, state_dict: Dict,
                             source: str) -> None:
    """Load ``state_dict`` strictly (frozen backbone weights may be absent
    from adapter checkpoints), raising :class:`CheckpointError` on any
    mismatch."""
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except RuntimeError as e:
        detail = str(e).strip().split('\n')
        detail = next((line.strip() for line in detail[1:] if line.strip()),
                      detail[0])
        raise CheckpointError(
            f'checkpoint {source} does not match the config: {detail}')
    # Keys the checkpoint has but the model's own load hook drops (Swin V2
    # re-computes its index buffers) are not missing.
    missing = [k for k in result.missing_keys if k not in state_dict]
    problems = []
    for name, keys in (('missing', missing),
                       ('unexpected', result.unexpected_keys)):
        if keys:
            shown = ', '.join(keys[:3]) + (', ...' if len(keys) > 3 else '')
            problems.append(f'{len(keys)} {name} keys ({shown})')
    if problems:
        raise CheckpointError(f'checkpoint {source} does not match the '
                              f'config: {"; ".join(problems)}')


def check_output_path(path: str, force: bool, *inputs: str) -> None:
    """Refuse to write over an input, or over an existing file unless
    ``force``."""
    for given in inputs:
        if given and osp.exists(given) and osp.exists(path) and \
                osp.samefile(given, path):
            raise CheckpointError(f'output {path} is an input; choose '
                                  'another output path')
    if osp.exists(path) and not force:
        raise CheckpointError(f'output {path} exists; pass --force to '
                              'replace it')
    folder = osp.dirname(osp.abspath(path))
    if not osp.isdir(folder):
        raise CheckpointError(f'output folder {folder} does not exist')


@contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces
    ``path`` in one rename, on failure it is removed."""
    folder, name = osp.split(osp.abspath(path))
    stem, ext = osp.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f'.{stem}.', suffix=f'.tmp{ext}',
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def save_checkpoint_atomic(checkpoint: dict, path: str) -> None:
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)
