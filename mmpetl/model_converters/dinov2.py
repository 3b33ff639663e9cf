# Copyright (c) mmpetl contributors. All rights reserved.
"""DINOv2's hub checkpoints (facebookresearch/dinov2,
``dinov2_vit{s,b,l,g}14_pretrain.pth``: a flat state dict) to mmpretrain's
``VisionTransformer`` (``arch='dinov2-*'``, ``layer_scale_init_value``
set, ``layer_cfgs=dict(ffn_type='swiglu_fused')`` for the giant)::

    patch_embed.proj.*        -> patch_embed.projection.*
    cls_token, pos_embed      -> the same
    blocks.N.norm1 / norm2    -> layers.N.ln1 / ln2
    blocks.N.attn.qkv / proj  -> layers.N.attn.qkv / proj
    blocks.N.ls1.gamma (D)    -> layers.N.attn.gamma1.weight
    blocks.N.mlp.fc1 / fc2    -> layers.N.ffn.layers.0.0 / layers.1
    blocks.N.mlp.w12 / w3     -> layers.N.ffn.w12 / w3 (SwiGLU, the giant)
    blocks.N.ls2.gamma (D)    -> layers.N.ffn.gamma2.weight
    norm                      -> ln1 (``final_norm=True``)

Dropped: ``mask_token`` (of the iBOT loss only). The ``_reg`` files'
``register_tokens`` have no place in mmpretrain's ViT: such a file is
refused rather than loaded without them.
"""
import re
from collections import OrderedDict
from typing import Dict

import torch

_RENAMES = (
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.attn\.', r'layers.\1.attn.'),
    (r'^blocks\.(\d+)\.ls1\.gamma$', r'layers.\1.attn.gamma1.weight'),
    (r'^blocks\.(\d+)\.ls2\.gamma$', r'layers.\1.ffn.gamma2.weight'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
    (r'^blocks\.(\d+)\.mlp\.(w12|w3)\.', r'layers.\1.ffn.\2.'),
    (r'^norm\.', 'ln1.'),
    (r'^(cls_token|pos_embed)$', r'\1'),
)


def convert_dinov2(
        state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Convert a DINOv2 hub state dict to ``backbone.*`` keys of
    mmpretrain's ``VisionTransformer``.

    Raises:
        ValueError: Not DINOv2's layout (no ``blocks.0.ls1.gamma``), a
            ``_reg`` file, or a key this mapping does not know.
    """
    if 'blocks.0.ls1.gamma' not in state_dict:
        raise ValueError('no key blocks.0.ls1.gamma: not a DINOv2 '
                         'checkpoint (facebookresearch/dinov2 layout)')
    if 'register_tokens' in state_dict:
        raise ValueError(
            'it has register_tokens (a dinov2_*_reg file), which '
            "mmpretrain's VisionTransformer has no place for: use the "
            'file without registers (dinov2_*_pretrain.pth)')
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key == 'mask_token':
            continue
        for pattern, new in _RENAMES:
            if re.match(pattern, key):
                converted['backbone.' + re.sub(pattern, new, key)] = value
                break
        else:
            raise ValueError(f'unexpected key {key!r} for DINOv2')
    return converted
