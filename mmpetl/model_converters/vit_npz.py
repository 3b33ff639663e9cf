# Copyright (c) mmpetl contributors. All rights reserved.
"""Google's ViT ``.npz`` checkpoints (``vit_jax`` / ``big_vision`` layout,
e.g. ``imagenet21k/ViT-B_16.npz``, the start of the PETL papers) to
mmpretrain's ``VisionTransformer`` keys.

Google's layout (D: width, H: heads, h: head dim, F: MLP width, P: patch)::

    embedding/kernel (P, P, 3, D) HWIO    -> patch_embed.projection.weight (D, 3, P, P)
    cls (1, 1, D)                          -> cls_token
    Transformer/posembed_input/pos_embedding (1, N+1, D) -> pos_embed
    Transformer/encoderblock_{i}/
      LayerNorm_0/{scale,bias}             -> layers.{i}.ln1.{weight,bias}
      MultiHeadDotProductAttention_1/
        {query,key,value}/kernel (D, H, h) -> layers.{i}.attn.qkv.weight (3D, D)
        {query,key,value}/bias (H, h)      -> layers.{i}.attn.qkv.bias (3D)
        out/kernel (H, h, D), out/bias (D) -> layers.{i}.attn.proj
      LayerNorm_2/{scale,bias}             -> layers.{i}.ln2
      MlpBlock_3/Dense_0 (D, F), Dense_1 (F, D) -> layers.{i}.ffn.layers.{0.0,1}
    Transformer/encoder_norm/{scale,bias}  -> ln1 (the final norm)
    pre_logits/{kernel,bias} (optional)    -> head.layers.pre_logits
    head/{kernel,bias} (optional)          -> head.layers.head

Dense kernels are stored (in, out): the torch weight is the transpose.
Keys come out with the ``backbone.`` prefix of an mmpretrain classifier
checkpoint; load them with ``init_cfg=dict(type='Pretrained',
checkpoint=..., prefix='backbone.')``. The model uses LayerNorm eps 1e-6,
as mmpretrain's ViT does by default.
"""
import re
from collections import OrderedDict
from typing import Mapping

import numpy as np
import torch

from ..utils.errors import InputError

BLOCK = 'Transformer/encoderblock_{}'
ATTENTION = BLOCK + '/MultiHeadDotProductAttention_1'


class NpzLayoutError(InputError, KeyError):
    """The arrays do not follow Google's ViT layout; the message says
    which key is missing or has the wrong shape."""

    def __str__(self):
        return self.args[0]


def _dense(kernel: np.ndarray) -> torch.Tensor:
    """A flax Dense kernel (in, out) as a torch Linear weight (out, in)."""
    return torch.from_numpy(np.ascontiguousarray(kernel.T))


def num_vit_npz_layers(arrays: Mapping[str, np.ndarray]) -> int:
    """The number of encoder blocks in Google's layout."""
    indices = {
        int(m.group(1))
        for m in (re.match(r'Transformer/encoderblock_(\d+)/', k)
                  for k in arrays) if m
    }
    if not indices or indices != set(range(len(indices))):
        raise NpzLayoutError(
            'no consecutive Transformer/encoderblock_{i} keys: not a ViT '
            'checkpoint in Google\'s layout')
    return len(indices)


def convert_vit_npz(
        arrays: Mapping[str, np.ndarray],
        with_head: bool = False) -> 'OrderedDict[str, torch.Tensor]':
    """Convert Google ViT arrays to an mmpretrain classifier state dict.

    Args:
        arrays (Mapping[str, np.ndarray]): The ``.npz`` contents, e.g.
            ``np.load('ViT-B_16.npz')``.
        with_head (bool): Also convert ``pre_logits`` and ``head`` (for
            mmpretrain's ``VisionTransformerClsHead``). PETL replaces the
            head, so the default is the backbone only.

    Returns:
        OrderedDict: ``backbone.*`` (and ``head.layers.*``) float32 tensors.

    Raises:
        NpzLayoutError: A key is missing, has an unexpected shape or is no
            array of numbers (e.g. an object array).
    """

    def get(key: str, ndim: int) -> np.ndarray:
        if key not in arrays:
            raise NpzLayoutError(f'missing key {key!r}')
        try:  # an object array (pickled) is refused by np.load's reader
            value = np.asarray(arrays[key], dtype=np.float32)
        except (ValueError, TypeError) as e:
            raise NpzLayoutError(f'{key!r} is not an array of numbers '
                                 f'({str(e).splitlines()[0]})')
        if value.ndim != ndim:
            raise NpzLayoutError(f'{key!r} has shape {value.shape}, '
                                 f'expected {ndim} dimensions')
        return value

    def tensor(key: str, ndim: int) -> torch.Tensor:
        return torch.from_numpy(get(key, ndim))

    state = OrderedDict()
    patch = get('embedding/kernel', 4)  # (P, P, 3, D), HWIO
    dims = patch.shape[-1]
    state['backbone.cls_token'] = tensor('cls', 3)
    state['backbone.pos_embed'] = tensor(
        'Transformer/posembed_input/pos_embedding', 3)
    state['backbone.patch_embed.projection.weight'] = torch.from_numpy(
        np.ascontiguousarray(patch.transpose(3, 2, 0, 1)))
    state['backbone.patch_embed.projection.bias'] = tensor(
        'embedding/bias', 1)
    for i in range(num_vit_npz_layers(arrays)):
        block, attn, out = BLOCK.format(i), ATTENTION.format(i), \
            f'backbone.layers.{i}'
        state[f'{out}.ln1.weight'] = tensor(f'{block}/LayerNorm_0/scale', 1)
        state[f'{out}.ln1.bias'] = tensor(f'{block}/LayerNorm_0/bias', 1)
        # (D, H, h) kernels: output feature = head * h + j, as in the
        # reshape of mmpretrain's fused qkv projection.
        state[f'{out}.attn.qkv.weight'] = torch.cat([
            _dense(get(f'{attn}/{p}/kernel', 3).reshape(dims, -1))
            for p in ('query', 'key', 'value')
        ])
        state[f'{out}.attn.qkv.bias'] = torch.cat([
            torch.from_numpy(get(f'{attn}/{p}/bias', 2).reshape(-1))
            for p in ('query', 'key', 'value')
        ])
        state[f'{out}.attn.proj.weight'] = _dense(
            get(f'{attn}/out/kernel', 3).reshape(-1, dims))
        state[f'{out}.attn.proj.bias'] = tensor(f'{attn}/out/bias', 1)
        state[f'{out}.ln2.weight'] = tensor(f'{block}/LayerNorm_2/scale', 1)
        state[f'{out}.ln2.bias'] = tensor(f'{block}/LayerNorm_2/bias', 1)
        for dense, target in (('Dense_0', 'ffn.layers.0.0'),
                              ('Dense_1', 'ffn.layers.1')):
            mlp = f'{block}/MlpBlock_3/{dense}'
            state[f'{out}.{target}.weight'] = _dense(get(f'{mlp}/kernel', 2))
            state[f'{out}.{target}.bias'] = tensor(f'{mlp}/bias', 1)
    state['backbone.ln1.weight'] = tensor('Transformer/encoder_norm/scale', 1)
    state['backbone.ln1.bias'] = tensor('Transformer/encoder_norm/bias', 1)
    if with_head:
        if 'pre_logits/kernel' in arrays:
            state['head.layers.pre_logits.weight'] = _dense(
                get('pre_logits/kernel', 2))
            state['head.layers.pre_logits.bias'] = tensor(
                'pre_logits/bias', 1)
        state['head.layers.head.weight'] = _dense(get('head/kernel', 2))
        state['head.layers.head.bias'] = tensor('head/bias', 1)
    return state
