# Copyright (c) mmpetl contributors. All rights reserved.
"""State dicts read from checkpoints: their model keys, the kinds of their
tensors and their values checked before they are loaded into a model."""
from collections import OrderedDict
from typing import Dict, List, Tuple

import torch
from torch import nn

from .errors import CheckpointError


def model_state_dict(checkpoint: dict) -> 'OrderedDict[str, torch.Tensor]':
    """The checkpoint's state dict, without DDP's ``module.`` prefix, with
    its metadata (which holds the backbone fingerprint)."""

    def strip(key):
        return key[len('module.'):] if key.startswith('module.') else key

    state_dict = checkpoint.get('state_dict', checkpoint)
    result = OrderedDict((strip(k), v) for k, v in state_dict.items())
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        result._metadata = OrderedDict(
            ('' if k == 'module' else strip(k), v)
            for k, v in metadata.items())
    return result


def check_tensor_kinds(model: nn.Module, state_dict: Dict,
                       source: str) -> None:
    """Raise :class:`CheckpointError` for a tensor of ``state_dict`` that
    cannot be a weight of ``model``: sparse or another layout than dense,
    on the ``meta`` device (no values), holding NaN or Inf, or integer
    where the model's tensor of that name is floating point (``copy_``
    would convert it without a word)."""
    own = model.state_dict(keep_vars=True)
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        if value.layout != torch.strided or value.is_meta:
            kind = 'on the meta device (no values)' if value.is_meta else \
                f'of layout {value.layout}'
            raise CheckpointError(f'checkpoint {source}: {key} is a tensor '
                                  f'{kind}; weights are dense tensors')
        target = own.get(key)
        if isinstance(target, torch.Tensor) and target.is_floating_point() \
                and not value.is_floating_point():
            raise CheckpointError(
                f'checkpoint {source}: {key} is {value.dtype}, but the '
                f"model's {key} is {target.dtype}; weights are floating "
                'point')
    check_finite(state_dict, f'checkpoint {source}')


def load_matching_state_dict(model: nn.Module, state_dict: Dict,
                             source: str) -> None:
    """Load ``state_dict`` strictly (frozen backbone weights may be absent
    from adapter checkpoints), raising :class:`CheckpointError` on any
    mismatch (see also :func:`check_tensor_kinds`)."""
    check_tensor_kinds(model, state_dict, source)
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except CheckpointError as e:  # e.g. trained on another backbone
        raise type(e)(f'checkpoint {source}: {e}') from None
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


def _stored_values(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, or if it is a view with more elements than its storage
    holds (e.g. a stride-0 10^6 x 10^6 expansion of one number, which a
    177 kB file can hold), its storage as a flat tensor: the values it
    shows, without expanding them."""
    stored = tensor.untyped_storage().nbytes() // tensor.element_size()
    if tensor.numel() <= stored:
        return tensor
    flat = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    return flat.set_(tensor.untyped_storage())


def _non_finite_count(values: torch.Tensor) -> int:
    """The number of NaN / Inf among ``values``. Dtypes without a CPU
    ``isfinite`` (the float8 kinds) are read in float32, which holds each
    of their values exactly, in slices of a million."""
    try:
        return int((~torch.isfinite(values)).sum())
    except (RuntimeError, NotImplementedError):
        flat = values.reshape(-1)
        return sum(
            int((~torch.isfinite(flat[i:i + 2**20].float())).sum())
            for i in range(0, flat.numel(), 2**20))


def non_finite_entries(state_dict: Dict) -> List[Tuple[str, int]]:
    """``(key, count)`` of every floating tensor holding NaN or Inf (in its
    stored values; dense tensors only)."""
    found = []
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and (
                value.is_floating_point() or value.is_complex()) and \
                value.layout == torch.strided and not value.is_meta:
            bad = _non_finite_count(_stored_values(value))
            if bad:
                found.append((key, bad))
    return found


def check_finite(state_dict: Dict, what: str) -> None:
    """Raise :class:`CheckpointError` naming the first parameter of
    ``state_dict`` with NaN or Inf values; ``what`` names the weights."""
    bad = non_finite_entries(state_dict)
    if bad:
        key, count = bad[0]
        more = f' (and {len(bad) - 1} more tensors)' if len(bad) > 1 else ''
        raise CheckpointError(f'{what} has non-finite weights: {key} holds '
                              f'{count:,} NaN/Inf values{more}')


__all__ = ['model_state_dict', 'check_tensor_kinds',
           'load_matching_state_dict', 'non_finite_entries', 'check_finite']
