# Copyright (c) mmpetl contributors. All rights reserved.
"""Proof that the pre-trained file filled the frozen backbone.

MMEngine's ``PretrainedInit`` loads with ``strict=False`` and logs the keys
it could not place as one warning: a file whose keys do not match (an
``init_cfg`` without ``prefix='backbone.'`` for a whole-model checkpoint)
leaves the backbone at its random init, which a PETL wrapper then freezes
and trains adapters on. :func:`check_pretrained_loaded` stops that at build
time.

A backbone parameter counts as filled when the file holds a tensor of its
name (after the ``prefix``), or one with its values (backbones that rename
keys while loading: mmseg's and mmdet's Swin convert official checkpoints).
A parameter with one value throughout (a new norm's ones and zeros, a zero
token) does not depend on the seed, and is accepted too; any other is an
error: one line naming the file, how many parameters it filled, and the
likely fix.
"""
import hashlib
from typing import Dict, Iterable, List, Optional

import torch
from mmengine.runner.checkpoint import _load_checkpoint
from torch import Tensor, nn

from mmpetl.fileio.errors import CheckpointError


class PretrainedLoadError(CheckpointError):
    """The pre-trained file left parameters of the backbone at random
    init."""


def _content_digest(tensor: Tensor) -> str:
    tensor = tensor.detach().cpu().float().contiguous()
    digest = hashlib.sha1(str(tuple(tensor.shape)).encode())
    digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _is_constant(tensor: Tensor) -> bool:
    return tensor.numel() == 0 or bool((tensor == tensor.flatten()[0]).all())


def _prefix_hint(file_keys: Iterable[str], names: List[str]) -> str:
    """The ``prefix`` that would make ``file_keys`` name ``names``."""
    wanted = set(names)
    for key in file_keys:
        for name in names[:50]:
            if key.endswith('.' + name) and key[:-len(name)]:
                prefix = key[:-len(name)]
                hits = sum(k.startswith(prefix) and k[len(prefix):] in wanted
                           for k in file_keys)
                if hits * 2 >= len(wanted):
                    return (f"its keys start with {prefix!r}: add prefix="
                            f"'{prefix}' to the backbone's init_cfg")
    return ('is it a checkpoint of this backbone (type, arch and sizes as in '
            'the config)?')


def _checkpoint_tensors(checkpoint: dict) -> Dict[str, Tensor]:
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
            break
    return {k: v for k, v in checkpoint.items() if isinstance(v, Tensor)}


@torch.no_grad()
def check_pretrained_loaded(backbone: nn.Module, file: Optional[str],
                            prefix: Optional[str] = None) -> None:
    """Raise :class:`PretrainedLoadError` unless ``file`` filled every
    parameter of ``backbone`` that its init drew at random.

    Args:
        backbone (nn.Module): The stock backbone, after ``init_weights()``.
        file (str, optional): The pre-trained file its ``init_cfg`` names;
            None: nothing to check.
        prefix (str, optional): The ``init_cfg``'s ``prefix``.
    """
    if file is None:
        return
    tensors = _checkpoint_tensors(
        _load_checkpoint(file, map_location='cpu', logger='current'))
    names = set(tensors)
    if prefix:
        names |= {k[len(prefix):] for k in tensors if k.startswith(prefix)}
    params = dict(backbone.named_parameters())
    unnamed = [n for n in params if n not in names]
    if not unnamed:
        return
    digests = {_content_digest(t) for t in tensors.values()}
    # A constant tensor matches too easily to count as filled by content.
    unmatched = [
        n for n in unnamed if _is_constant(params[n])
        or _content_digest(params[n]) not in digests
    ]
    unfilled = [n for n in unmatched if not _is_constant(params[n])]
    if not unfilled:
        return
    more = f' (+{len(unfilled) - 3} more)' if len(unfilled) > 3 else ''
    raise PretrainedLoadError(
        f'pre-trained file {file} filled {len(params) - len(unmatched)} of '
        f'{len(params)} parameters of {type(backbone).__name__}; '
        f'{", ".join(unfilled[:3])}{more} stay at random init and would be '
        f'frozen: {_prefix_hint(list(tensors), list(params))}')
