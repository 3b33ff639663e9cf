# Copyright (c) mmpetl contributors. All rights reserved.
"""SAM's checkpoints (facebookresearch/segment-anything,
``sam_vit_{b,l,h}_*.pth``: a flat state dict of the whole ``Sam``) to
mmpretrain's ``ViTSAM`` (the image encoder)::

    image_encoder.pos_embed (1, H, W, D)     -> pos_embed
    image_encoder.patch_embed.proj.*         -> patch_embed.projection.*
    image_encoder.blocks.N.norm1 / norm2     -> layers.N.ln1 / ln2
    image_encoder.blocks.N.attn.{qkv, proj, rel_pos_h, rel_pos_w}
                                             -> layers.N.attn.(the same)
    image_encoder.blocks.N.mlp.lin1 / lin2   -> layers.N.ffn.layers.0.0 / 1
    image_encoder.neck.{0,1,2,3}             -> channel_reduction.{0,1,2,3}

Dropped: ``prompt_encoder.*`` and ``mask_decoder.*`` (the promptable
segmentation heads, no part of the backbone).
"""
import re
from collections import OrderedDict
from typing import Dict

import torch

_ENCODER = 'image_encoder.'
_RENAMES = (
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
    (r'^blocks\.(\d+)\.mlp\.lin1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.lin2\.', r'layers.\1.ffn.layers.1.'),
    (r'^neck\.', 'channel_reduction.'),
    (r'^pos_embed$', 'pos_embed'),
)


def convert_sam(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Convert SAM's state dict to ``backbone.*`` keys of mmpretrain's
    ``ViTSAM``.

    Raises:
        ValueError: Not SAM's layout (no ``image_encoder.blocks.0.attn.
            qkv.weight``), or an image-encoder key this mapping does not
            know.
    """
    if _ENCODER + 'blocks.0.attn.qkv.weight' not in state_dict:
        raise ValueError('no key image_encoder.blocks.0.attn.qkv.weight: '
                         'not a SAM checkpoint (segment-anything layout)')
    converted = OrderedDict()
    for key, value in state_dict.items():
        if not key.startswith(_ENCODER):
            continue  # prompt_encoder, mask_decoder
        key = key[len(_ENCODER):]
        for pattern, new in _RENAMES:
            if re.match(pattern, key):
                converted['backbone.' + re.sub(pattern, new, key)] = value
                break
        else:
            raise ValueError(f'unexpected key {_ENCODER + key!r} for SAM')
    return converted
