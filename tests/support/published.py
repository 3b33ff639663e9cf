# Copyright (c) mmpetl contributors. All rights reserved.
"""Pre-trained files in the exact layouts their users download, with random
values, at any size (tiny in the tests, the published sizes with
``MMPETL_REAL_SIZE=1``).

Key names, shapes, orders and nestings follow the public model definitions
of each release, never the model that later loads the file:

- :func:`official_swin`: microsoft/Swin-Transformer's ``SwinTransformer``
  (``{'model': ...}``; ``patch_embed.proj``, ``layers.N.blocks.M.attn.
  {relative_position_bias_table, relative_position_index, qkv, proj}``,
  ``mlp.fc1/fc2``, the shifted blocks' ``attn_mask``,
  ``layers.N.downsample.{reduction, norm}`` on the 4C channels of the
  ``x0, x1, x2, x3`` concatenation, the last ``norm`` and the 22k
  ``head``): the file the COCO / VOC (mmdet, ``convert_weights=True``),
  ADE20K (after mmseg's ``swin2mmseg``), VTAB Swin (after mmpretrain's
  ``swin_to_mmpretrain``) and Video Swin (inflated by mmaction2) configs
  start from.
- :func:`vit_npz`: Google's ``imagenet21k/ViT-B_16.npz`` (flax arrays:
  ``embedding/kernel`` HWIO, per-head ``query/key/value`` kernels,
  ``pre_logits``, a 21,843-way ``head``), converted by
  :mod:`mmpetl.model_converters.vit_npz` for every ViT-B/16 config.
- :func:`timm_vit`: timm's ``jx_vit_base_p16_224`` layout (``blocks.N.attn.
  qkv``, ``mlp.fc1``, ``norm``), which mmseg's ``vit2mmseg`` converts.
- :func:`videomae_pretrain`: MCG-NJU/VideoMAE's pre-training checkpoint
  (``{'model': ...}``, ``encoder.blocks.N.attn.{qkv.weight, q_bias,
  v_bias}``, ``encoder.norm``, decoder, ``encoder_to_decoder``,
  ``mask_token``), converted by :mod:`mmpetl.model_converters.videomae`.
- :func:`model_zoo`: the OpenMMLab model-zoo files (``{'meta': ...,
  'state_dict': ...}`` of a whole classifier: ``backbone.`` keys and the
  head's), the layout of the EVA-02 / DINOv2 / SAM / BEiT / DeiT3 /
  ConvNeXt / Swin V2 rows and of ``tools/train.py``'s own checkpoints (the
  quick start's pre-training). The authors' own layouts of the EVA-02,
  DINOv2, SAM and BEiT rows: :mod:`tests.support.published_upstream`.
"""
import copy
import os
from collections import OrderedDict
from typing import Dict, Optional, Sequence

import numpy as np
import torch

#: Set to 1 to write (and test) the published sizes.
REAL_SIZE_ENV = 'MMPETL_REAL_SIZE'


def real_size() -> bool:
    return os.environ.get(REAL_SIZE_ENV, '') == '1'


class _Random:
    """Random tensors: norms near one, everything else small."""

    def __init__(self, seed: int):
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, *shape: int, norm: bool = False) -> torch.Tensor:
        value = 0.05 * torch.randn(shape, generator=self.generator)
        return value + 1 if norm else value


def _relative_position_index(window: int) -> torch.Tensor:
    """Swin's ``relative_position_index`` (W², W²) for a square window, as
    microsoft/Swin-Transformer's WindowAttention computes it."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window),
                       torch.arange(window),
                       indexing='ij')).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    relative = relative.contiguous()
    relative[:, :, 0] += window - 1
    relative[:, :, 1] += window - 1
    relative[:, :, 0] *= 2 * window - 1
    return relative.sum(-1)


def official_swin(path: str,
                  embed_dims: int = 128,
                  depths: Sequence[int] = (2, 2, 18, 2),
                  num_heads: Sequence[int] = (4, 8, 16, 32),
                  window_size: int = 7,
                  img_size: int = 224,
                  patch_size: int = 4,
                  num_classes: int = 21841,
                  mlp_ratio: int = 4,
                  seed: int = 0) -> Dict[str, torch.Tensor]:
    """Write an official Swin checkpoint (defaults: Swin-B ImageNet-22k,
    ``swin_base_patch4_window7_224_22k.pth``); returns its state dict."""
    rand, state = _Random(seed), OrderedDict()
    dims = embed_dims
    state['patch_embed.proj.weight'] = rand(dims, 3, patch_size, patch_size)
    state['patch_embed.proj.bias'] = rand(dims)
    state['patch_embed.norm.weight'] = rand(dims, norm=True)
    state['patch_embed.norm.bias'] = rand(dims)
    resolution = img_size // patch_size
    for i, (depth, heads) in enumerate(zip(depths, num_heads)):
        window = min(window_size, resolution)
        for j in range(depth):
            block = f'layers.{i}.blocks.{j}'
            # Shifted blocks keep their mask as a buffer (before the
            # submodules' keys, as nn.Module orders them).
            if j % 2 == 1 and resolution > window_size:
                windows = (resolution // window)**2
                state[f'{block}.attn_mask'] = torch.zeros(
                    windows, window * window, window * window)
            state[f'{block}.norm1.weight'] = rand(dims, norm=True)
            state[f'{block}.norm1.bias'] = rand(dims)
            state[f'{block}.attn.relative_position_bias_table'] = rand(
                (2 * window - 1)**2, heads)
            state[f'{block}.attn.relative_position_index'] = \
                _relative_position_index(window)
            state[f'{block}.attn.qkv.weight'] = rand(3 * dims, dims)
            state[f'{block}.attn.qkv.bias'] = rand(3 * dims)
            state[f'{block}.attn.proj.weight'] = rand(dims, dims)
            state[f'{block}.attn.proj.bias'] = rand(dims)
            state[f'{block}.norm2.weight'] = rand(dims, norm=True)
            state[f'{block}.norm2.bias'] = rand(dims)
            hidden = mlp_ratio * dims
            state[f'{block}.mlp.fc1.weight'] = rand(hidden, dims)
            state[f'{block}.mlp.fc1.bias'] = rand(hidden)
            state[f'{block}.mlp.fc2.weight'] = rand(dims, hidden)
            state[f'{block}.mlp.fc2.bias'] = rand(dims)
        if i < len(depths) - 1:
            # PatchMerging: norm over cat(x0, x1, x2, x3), 4C -> 2C.
            state[f'layers.{i}.downsample.reduction.weight'] = rand(
                2 * dims, 4 * dims)
            state[f'layers.{i}.downsample.norm.weight'] = rand(4 * dims,
                                                               norm=True)
            state[f'layers.{i}.downsample.norm.bias'] = rand(4 * dims)
            dims, resolution = 2 * dims, resolution // 2
    state['norm.weight'] = rand(dims, norm=True)
    state['norm.bias'] = rand(dims)
    state['head.weight'] = rand(num_classes, dims)
    state['head.bias'] = rand(num_classes)
    torch.save(dict(model=state), path)
    return state


def vit_npz(path: str,
            embed_dims: int = 768,
            num_layers: int = 12,
            num_heads: int = 12,
            mlp_dims: int = 3072,
            patch_size: int = 16,
            img_size: int = 224,
            num_classes: int = 21843,
            seed: int = 0) -> Dict[str, np.ndarray]:
    """Write Google's ViT ``.npz`` (defaults: ``imagenet21k/ViT-B_16.npz``);
    returns its arrays."""
    rand = _Random(seed)

    def arr(*shape, norm=False):
        return rand(*shape, norm=norm).numpy()

    d, h = embed_dims, embed_dims // num_heads
    tokens = (img_size // patch_size)**2 + 1
    arrays = {
        'embedding/kernel': arr(patch_size, patch_size, 3, d),
        'embedding/bias': arr(d),
        'cls': arr(1, 1, d),
        'Transformer/posembed_input/pos_embedding': arr(1, tokens, d),
        'Transformer/encoder_norm/scale': arr(d, norm=True),
        'Transformer/encoder_norm/bias': arr(d),
        'pre_logits/kernel': arr(d, d),
        'pre_logits/bias': arr(d),
        'head/kernel': arr(d, num_classes),
        'head/bias': arr(num_classes),
    }
    for i in range(num_layers):
        block = f'Transformer/encoderblock_{i}'
        attn = f'{block}/MultiHeadDotProductAttention_1'
        for norm in ('LayerNorm_0', 'LayerNorm_2'):
            arrays[f'{block}/{norm}/scale'] = arr(d, norm=True)
            arrays[f'{block}/{norm}/bias'] = arr(d)
        for part in ('query', 'key', 'value'):
            arrays[f'{attn}/{part}/kernel'] = arr(d, num_heads, h)
            arrays[f'{attn}/{part}/bias'] = arr(num_heads, h)
        arrays[f'{attn}/out/kernel'] = arr(num_heads, h, d)
        arrays[f'{attn}/out/bias'] = arr(d)
        arrays[f'{block}/MlpBlock_3/Dense_0/kernel'] = arr(d, mlp_dims)
        arrays[f'{block}/MlpBlock_3/Dense_0/bias'] = arr(mlp_dims)
        arrays[f'{block}/MlpBlock_3/Dense_1/kernel'] = arr(mlp_dims, d)
        arrays[f'{block}/MlpBlock_3/Dense_1/bias'] = arr(d)
    with open(path, 'wb') as f:
        np.savez(f, **arrays)
    return arrays


def converted_vit_npz(path: str,
                      npz_path: Optional[str] = None,
                      **sizes) -> str:
    """:func:`vit_npz`, converted as ``tools/model_converters/
    vit_npz2mmpretrain.py`` writes it (``backbone.`` keys); returns
    ``path``."""
    from mmpetl.model_converters.vit_npz import convert_vit_npz
    npz_path = npz_path or f'{path}.npz'
    vit_npz(npz_path, **sizes)
    with np.load(npz_path) as arrays:
        state = convert_vit_npz(arrays)
    torch.save(dict(state_dict=state, meta=dict(converted_from=npz_path)),
               path)
    return path


def timm_vit(path: str,
             embed_dims: int = 768,
             num_layers: int = 12,
             mlp_dims: int = 3072,
             patch_size: int = 16,
             img_size: int = 224,
             num_classes: int = 1000,
             seed: int = 0) -> Dict[str, torch.Tensor]:
    """Write timm's ViT checkpoint (``jx_vit_base_p16_224-80ecf9dd.pth``:
    a flat state dict); returns it."""
    rand, d, state = _Random(seed), embed_dims, OrderedDict()
    state['cls_token'] = rand(1, 1, d)
    state['pos_embed'] = rand(1, (img_size // patch_size)**2 + 1, d)
    state['patch_embed.proj.weight'] = rand(d, 3, patch_size, patch_size)
    state['patch_embed.proj.bias'] = rand(d)
    for i in range(num_layers):
        block = f'blocks.{i}'
        for norm in ('norm1', 'norm2'):
            state[f'{block}.{norm}.weight'] = rand(d, norm=True)
            state[f'{block}.{norm}.bias'] = rand(d)
        state[f'{block}.attn.qkv.weight'] = rand(3 * d, d)
        state[f'{block}.attn.qkv.bias'] = rand(3 * d)
        state[f'{block}.attn.proj.weight'] = rand(d, d)
        state[f'{block}.attn.proj.bias'] = rand(d)
        state[f'{block}.mlp.fc1.weight'] = rand(mlp_dims, d)
        state[f'{block}.mlp.fc1.bias'] = rand(mlp_dims)
        state[f'{block}.mlp.fc2.weight'] = rand(d, mlp_dims)
        state[f'{block}.mlp.fc2.bias'] = rand(d)
    state['norm.weight'] = rand(d, norm=True)
    state['norm.bias'] = rand(d)
    state['head.weight'] = rand(num_classes, d)
    state['head.bias'] = rand(num_classes)
    torch.save(state, path)
    return state


def videomae_pretrain(path: str,
                      embed_dims: int = 768,
                      num_layers: int = 12,
                      mlp_dims: int = 3072,
                      patch_size: int = 16,
                      tubelet_size: int = 2,
                      decoder_dims: int = 384,
                      decoder_layers: int = 4,
                      seed: int = 0) -> Dict[str, torch.Tensor]:
    """Write VideoMAE's pre-training checkpoint (``{'model': ...}``; the
    ViT-B K400 release by default); returns its state dict."""
    rand, state = _Random(seed), OrderedDict()

    def block(prefix, d, hidden):
        for norm in ('norm1', 'norm2'):
            state[f'{prefix}.{norm}.weight'] = rand(d, norm=True)
            state[f'{prefix}.{norm}.bias'] = rand(d)
        state[f'{prefix}.attn.q_bias'] = rand(d)
        state[f'{prefix}.attn.v_bias'] = rand(d)
        state[f'{prefix}.attn.qkv.weight'] = rand(3 * d, d)
        state[f'{prefix}.attn.proj.weight'] = rand(d, d)
        state[f'{prefix}.attn.proj.bias'] = rand(d)
        state[f'{prefix}.mlp.fc1.weight'] = rand(hidden, d)
        state[f'{prefix}.mlp.fc1.bias'] = rand(hidden)
        state[f'{prefix}.mlp.fc2.weight'] = rand(d, hidden)
        state[f'{prefix}.mlp.fc2.bias'] = rand(d)

    d = embed_dims
    state['mask_token'] = rand(1, 1, decoder_dims)
    state['encoder.patch_embed.proj.weight'] = rand(d, 3, tubelet_size,
                                                    patch_size, patch_size)
    state['encoder.patch_embed.proj.bias'] = rand(d)
    for i in range(num_layers):
        block(f'encoder.blocks.{i}', d, mlp_dims)
    state['encoder.norm.weight'] = rand(d, norm=True)
    state['encoder.norm.bias'] = rand(d)
    for i in range(decoder_layers):
        block(f'decoder.blocks.{i}', decoder_dims, 4 * decoder_dims)
    state['decoder.norm.weight'] = rand(decoder_dims, norm=True)
    state['decoder.norm.bias'] = rand(decoder_dims)
    pixels = 3 * tubelet_size * patch_size**2
    state['decoder.head.weight'] = rand(pixels, decoder_dims)
    state['decoder.head.bias'] = rand(pixels)
    state['encoder_to_decoder.weight'] = rand(decoder_dims, d)
    torch.save(dict(model=state), path)
    return state


def model_zoo(
        path: str,
        backbone_cfg: dict,
        head: Optional[Dict] = None,
        seed: int = 0,
        prefix: str = 'backbone.',
        nesting: Optional[str] = 'state_dict') -> Dict[str, torch.Tensor]:
    """Write an OpenMMLab model-zoo file of the stock backbone of
    ``backbone_cfg`` (its own state-dict keys, shapes and order) with random
    values, under ``prefix`` and ``nesting``, with ``head`` tensors (names
    -> shapes) beside it; returns the state dict written."""
    from mmpetl.registry import MODELS
    rand = _Random(seed)
    backbone = MODELS.build(copy.deepcopy(backbone_cfg))
    state = OrderedDict()
    for key, value in backbone.state_dict().items():
        if value.is_floating_point():
            value = rand(*value.shape, norm=key.endswith('norm.weight'))
        state[prefix + key] = value
    for key, shape in (head or {}).items():
        state[key] = rand(*shape)
    meta = dict(mmengine_version='0.10.0', epoch=300)
    torch.save(dict(meta=meta, **{nesting: state}) if nesting else state, path)
    return state


#: Tiny sizes of each layout, and the published ones.
TINY = dict(
    swin=dict(embed_dims=16,
              depths=(2, 2),
              num_heads=(2, 2),
              window_size=7,
              img_size=56,
              num_classes=10),
    vit=dict(embed_dims=32,
             num_layers=2,
             num_heads=2,
             mlp_dims=64,
             patch_size=8,
             img_size=32,
             num_classes=10),
    videomae=dict(embed_dims=32,
                  num_layers=2,
                  mlp_dims=64,
                  patch_size=8,
                  tubelet_size=2,
                  decoder_dims=16,
                  decoder_layers=1),
)
REAL = dict(
    swin=dict(),  # Swin-B 22k
    vit=dict(),  # ViT-B/16 21k
    videomae=dict(),  # VideoMAE ViT-B
)
