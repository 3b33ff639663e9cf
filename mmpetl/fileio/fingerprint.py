# Copyright (c) mmpetl contributors. All rights reserved.
"""Bind adapter checkpoints to the frozen backbone they were trained on.

Adapter checkpoints leave the frozen weights out, so nothing in them says
which pre-trained file they need: loaded onto another backbone they run,
and answer wrongly. Every :class:`~mmpetl.FrozenBackbone` therefore records
a *fingerprint* in its state dict's metadata (``state_dict._metadata``,
torch's per-module record, saved with the checkpoint; the keys stay those
of the trained parameters): the SHA-256 of its frozen weights as loaded
(every frozen tensor's name, dtype, shape and bytes, in name order) and the
pre-trained file its config names. Loading a state dict checks it against
the model's own:

* another digest: :class:`BackboneMismatchError`, naming both pre-trained
  files; ``MMPETL_IGNORE_FINGERPRINT=1`` turns it into a warning;
* no fingerprint (written before mmpetl recorded one, or a state dict
  rebuilt without its metadata): a warning;
* the frozen weights themselves in the state dict (``save_frozen=True``, a
  whole-model checkpoint): no check, the weights come along. All of them:
  a state dict with some frozen weights but not all is refused
  (:class:`PartialFrozenWeightsError`), since the missing ones would stay
  those of this model's backbone, unchecked.
"""
import hashlib
import warnings
from typing import Any, Dict, NamedTuple, Optional

import torch
from torch import nn

from .errors import CheckpointError
from .switches import IGNORE_FINGERPRINT_ENV, env_flag

#: Key of the fingerprint in the wrapper's state-dict metadata.
FINGERPRINT_KEY = 'backbone_fingerprint'


class BackboneMismatchError(CheckpointError):
    """A checkpoint was trained on other frozen backbone weights."""


class PartialFrozenWeightsError(BackboneMismatchError):
    """A state dict holds some of the frozen backbone weights, not all."""


class BackboneFingerprint(NamedTuple):
    """What a checkpoint's adapters were trained on."""
    digest: str
    pretrained: Optional[str]

    def describe(self) -> str:
        source = self.pretrained or 'no pre-trained file'
        return f'{source} (digest {self.digest[:12]})'


def weights_digest(state_dict: Dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) of the tensors' names, dtypes, shapes and bytes (a
    tensor on the ``meta`` device, built to count sizes only, has no
    bytes: its name, dtype and shape)."""
    digest = hashlib.sha256()
    for key in sorted(state_dict):
        tensor = state_dict[key].detach()
        digest.update(f'{key}|{tensor.dtype}|{tuple(tensor.shape)}|'.encode())
        if not tensor.is_meta:
            digest.update(
                tensor.cpu().contiguous().reshape(-1).view(
                    torch.uint8).numpy())
    return digest.hexdigest()


def pretrained_file(backbone_cfg: Any) -> Optional[str]:
    """The file an ``init_cfg=dict(type='Pretrained', checkpoint=...)`` (or
    a string ``pretrained``) of ``backbone_cfg`` loads."""
    if not isinstance(backbone_cfg, dict):
        return None
    init_cfgs = backbone_cfg.get('init_cfg') or []
    for init_cfg in init_cfgs if isinstance(init_cfgs, list) else [init_cfgs]:
        if isinstance(init_cfg, dict) and init_cfg.get(
                'type') == 'Pretrained' and init_cfg.get('checkpoint'):
            return str(init_cfg['checkpoint'])
    pretrained = backbone_cfg.get('pretrained')
    return pretrained if isinstance(pretrained, str) else None


def recorded_fingerprint(recorded: Any) -> Optional[BackboneFingerprint]:
    """The fingerprint a checkpoint's metadata records (``None`` for none),
    checked: a dict with a SHA-256 hex ``digest`` and a string or absent
    ``pretrained``; anything else (crafted metadata) is a
    :class:`CheckpointError`."""
    if recorded is None:
        return None
    digest = recorded.get('digest') if isinstance(recorded, dict) else None
    pretrained = recorded.get('pretrained') if isinstance(recorded,
                                                          dict) else None
    if not (isinstance(digest, str) and len(digest) == 64
            and all(c in '0123456789abcdef' for c in digest)) or not (
                pretrained is None or isinstance(pretrained, str)):
        raise CheckpointError(
            f'its backbone fingerprint is malformed ({recorded!r:.80}): a '
            "dict with a SHA-256 'digest' (64 hex digits) and a "
            "'pretrained' file name is expected; the file was not written "
            'by mmpetl')
    return BackboneFingerprint(digest, pretrained)


def check_fingerprint(recorded: Optional[BackboneFingerprint],
                      current: BackboneFingerprint) -> None:
    """Raise :class:`BackboneMismatchError` if ``recorded`` (from a
    checkpoint) is not ``current`` (the model's); warn without one."""
    if recorded is None:
        warnings.warn(
            'the checkpoint has no backbone fingerprint (written before '
            'mmpetl recorded one): cannot check that it was trained on this '
            f'backbone, {current.describe()}', stacklevel=2)
        return
    if recorded.digest == current.digest:
        return
    message = (f'trained on the backbone of {recorded.describe()}, but this '
               f'model\'s backbone is {current.describe()}; use the config '
               'and pre-trained file it was trained with')
    if env_flag(IGNORE_FINGERPRINT_ENV):
        warnings.warn(f'{message} ({IGNORE_FINGERPRINT_ENV} is set: loading '
                      'anyway)', stacklevel=2)
        return
    raise BackboneMismatchError(
        f'{message}, or set {IGNORE_FINGERPRINT_ENV}=1 to load it anyway')


def register_fingerprint_hooks(wrapper: nn.Module) -> None:
    """Make ``wrapper`` (a FrozenBackbone) record its fingerprint in the
    metadata of its state dict and check the fingerprint of state dicts
    loaded into it.

    ``wrapper.backbone_fingerprint()`` gives its current fingerprint,
    ``wrapper.frozen_state_keys()`` its frozen keys and
    ``wrapper.forget_backbone_fingerprint()`` drops the cached one.
    """

    def record(module, state_dict, prefix, local_metadata):
        local_metadata[FINGERPRINT_KEY] = \
            module.backbone_fingerprint()._asdict()

    def check_loaded(module, state_dict, prefix, local_metadata, strict,
                     missing_keys, unexpected_keys, error_msgs):
        frozen = module.frozen_state_keys()
        present = [key for key in frozen if prefix + key in state_dict]
        if present and len(present) < len(frozen):
            absent = [key for key in frozen if key not in present]
            raise PartialFrozenWeightsError(
                f'it holds {len(present)} of the {len(frozen)} frozen '
                f'backbone weights ({prefix}{present[0]}, ...) but not the '
                f'other {len(absent)} ({prefix}{absent[0]}, ...): a '
                'checkpoint holds all of them (save_frozen=True) or none '
                '(adapters only, bound to their backbone by its fingerprint)')
        if present:
            # The frozen weights come with it: fingerprint them once loaded.
            module.forget_backbone_fingerprint()
            return
        check_fingerprint(
            recorded_fingerprint(local_metadata.get(FINGERPRINT_KEY)),
            module.backbone_fingerprint())

    wrapper._register_state_dict_hook(record)
    wrapper._register_load_state_dict_pre_hook(check_loaded, with_module=True)


__all__ = [
    'BackboneFingerprint', 'BackboneMismatchError', 'FINGERPRINT_KEY',
    'IGNORE_FINGERPRINT_ENV', 'PartialFrozenWeightsError',
    'check_fingerprint', 'pretrained_file', 'recorded_fingerprint',
    'register_fingerprint_hooks', 'weights_digest'
]
