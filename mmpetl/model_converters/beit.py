# Copyright (c) mmpetl contributors. All rights reserved.
"""BEiT / BEiT v2 checkpoints (microsoft/unilm, e.g.
``beit_base_patch16_224_pt22k.pth``, ``beitv2_base_patch16_224_pt1k.pth``:
``{'model': ...}``) to mmpretrain's ``BEiTViT``::

    patch_embed.proj.*           -> patch_embed.projection.*
    cls_token (pos_embed)        -> the same (``use_abs_pos_emb=True``)
    blocks.N.gamma_1 / gamma_2   -> layers.N.gamma_1 / gamma_2
    blocks.N.norm1 / norm2       -> layers.N.ln1 / ln2
    blocks.N.attn.{q_bias, v_bias, qkv.weight, proj}
                                 -> layers.N.attn.(the same)
    blocks.N.attn.relative_position_bias_table / _index (fine-tuned files)
                                 -> layers.N.attn.(the same)
    rel_pos_bias.relative_position_bias_table / _index (pre-training:
      one table shared by every block)
                                 -> a copy in each layers.N.attn
    blocks.N.mlp.fc1 / fc2       -> layers.N.ffn.layers.0.0 / layers.1
    norm (pre-training) or fc_norm (fine-tuned)
                                 -> ln2 (``out_type='avg_featmap'``, the
                                    default) or ln1 (``--norm ln1``, for
                                    ``final_norm=True``)

The shared table is copied into every block as BEiT's own fine-tuning does
(``--rel_pos_bias``; mmpretrain's ``use_rel_pos_bias=True`` default).
Dropped: ``mask_token``, ``lm_head``, BEiT v2's ``cls_pt_layers`` (the
pre-training patch-aggregation blocks) and a fine-tuned ``head``.
Deviation: BEiT's pre-training ``norm`` normalises every token, the
``ln2`` it initialises normalises the mean-pooled token (BEiT's
fine-tuning starts ``fc_norm`` fresh instead); the choice keeps every
backbone tensor from the file.
"""
import re
from collections import OrderedDict
from typing import Dict

import torch

_DROPPED = ('mask_token', 'lm_head.', 'cls_pt_layers.', 'head.',
            'rel_pos_bias.')
_RENAMES = (
    (r'^patch_embed\.proj\.', 'patch_embed.projection.'),
    (r'^blocks\.(\d+)\.norm1\.', r'layers.\1.ln1.'),
    (r'^blocks\.(\d+)\.norm2\.', r'layers.\1.ln2.'),
    (r'^blocks\.(\d+)\.(gamma_[12]|attn\..*)$', r'layers.\1.\2'),
    (r'^blocks\.(\d+)\.mlp\.fc1\.', r'layers.\1.ffn.layers.0.0.'),
    (r'^blocks\.(\d+)\.mlp\.fc2\.', r'layers.\1.ffn.layers.1.'),
    (r'^(cls_token|pos_embed)$', r'\1'),
)


def convert_beit(state_dict: Dict[str, torch.Tensor],
                 norm: str = 'ln2') -> Dict[str, torch.Tensor]:
    """Convert a BEiT / BEiT v2 state dict to ``backbone.*`` keys of
    mmpretrain's ``BEiTViT``; the last norm goes to ``norm`` (``'ln2'``
    or ``'ln1'``).

    Raises:
        ValueError: Not BEiT's layout (no ``blocks.0.attn.q_bias`` with
            ``blocks.0.gamma_1``), or a key this mapping does not know.
    """
    if not {'blocks.0.attn.q_bias', 'blocks.0.gamma_1'} <= set(state_dict):
        raise ValueError('no keys blocks.0.attn.q_bias and blocks.0.gamma_1:'
                         ' not a BEiT checkpoint (microsoft/unilm layout)')
    renames = _RENAMES + ((r'^(fc_)?norm\.', norm + '.'), )
    blocks = sorted(
        {int(k.split('.')[1])
         for k in state_dict if k.startswith('blocks.')})
    converted = OrderedDict()
    for key, value in state_dict.items():
        if key.startswith(_DROPPED):
            continue
        for pattern, new in renames:
            if re.match(pattern, key):
                converted['backbone.' + re.sub(pattern, new, key)] = value
                break
        else:
            raise ValueError(f'unexpected key {key!r} for BEiT')
    for name in ('relative_position_bias_table', 'relative_position_index'):
        shared = state_dict.get(f'rel_pos_bias.{name}')
        if shared is not None:
            for i in blocks:
                converted[f'backbone.layers.{i}.attn.{name}'] = shared.clone()
    return converted
