# Copyright (c) mmpetl contributors. All rights reserved.
"""Convert VideoMAE checkpoints (MCG-NJU/VideoMAE, pre-training or
fine-tuning) into mmaction2's ``VisionTransformer`` layout.

VideoMAE's pre-training checkpoints hold ``{'model': state_dict}`` with the
encoder under ``encoder.`` (besides the decoder, ``encoder_to_decoder`` and
``mask_token``); fine-tuned ones hold the encoder at top level, with
``fc_norm`` and ``head``. mmaction2 names two modules differently::

    patch_embed.proj.*   -> patch_embed.projection.*
    blocks.N.mlp.fc1.*   -> blocks.N.mlp.layers.0.0.*
    blocks.N.mlp.fc2.*   -> blocks.N.mlp.layers.1.*

Attention keys (``qkv.weight``, ``q_bias``, ``v_bias``, ``proj``) and norms
are the same. Dropped, as VideoMAE's own fine-tuning drops them: the
decoder side, the pre-training encoder's last ``norm`` (mean pooling uses a
fresh ``fc_norm`` instead) and the classification ``head``. The result is
written as ``backbone.*`` keys, the layout of mmaction2's recognizer
checkpoints, which the configs load with ``prefix='backbone.'``.
"""
import os.path as osp
from collections import OrderedDict
from typing import Dict

import torch

from ..fileio.errors import CheckpointError
from ..fileio.outputs import check_output_path, save_checkpoint
from ..fileio.safe_load import load_checkpoint_dict

_RENAMES = (
    ('patch_embed.proj.', 'patch_embed.projection.'),
    ('.mlp.fc1.', '.mlp.layers.0.0.'),
    ('.mlp.fc2.', '.mlp.layers.1.'),
)
_DROPPED = ('norm.', 'head.')


def videomae_state_dict(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The VideoMAE encoder's weights of ``checkpoint`` in mmaction2's
    ``VisionTransformer`` names (without prefix).

    Raises:
        ValueError: If ``checkpoint`` holds no VideoMAE encoder.
    """
    state_dict = checkpoint
    for key in ('model', 'module', 'state_dict'):
        if isinstance(checkpoint.get(key), dict):
            state_dict = checkpoint[key]
            break
    if any(k.startswith('encoder.') for k in state_dict):
        state_dict = {
            k[len('encoder.'):]: v
            for k, v in state_dict.items() if k.startswith('encoder.')
        }
    if not any(k.startswith('blocks.0.attn.qkv.') for k in state_dict):
        raise ValueError('no VideoMAE encoder in it: no key '
                         '(encoder.)blocks.0.attn.qkv.weight')
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(_DROPPED):
            continue
        for old, new in _RENAMES:
            key = key.replace(old, new)
        converted[key] = value
    return converted


def convert_videomae_checkpoint(path: str,
                                out: str,
                                force: bool = False) -> int:
    """Convert the VideoMAE checkpoint ``path`` into ``out`` (``backbone.*``
    keys). Returns the number of tensors written.

    Raises:
        CheckpointError: For unusable input; nothing is written then.
    """
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint {path} does not exist')
    check_output_path(out, force, path)
    checkpoint = load_checkpoint_dict(path)
    try:
        state_dict = videomae_state_dict(checkpoint)
    except ValueError as e:
        raise CheckpointError(f'{path}: {e}')
    save_checkpoint(
        dict(
            meta=dict(converted_from=osp.basename(path)),
            state_dict={f'backbone.{k}': v
                        for k, v in state_dict.items()}), out)
    return len(state_dict)
