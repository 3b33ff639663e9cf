# Copyright (c) mmpetl contributors. All rights reserved.
"""The authors' own checkpoint layouts of the EVA-02, DINOv2, SAM and BEiT
rows of the backbone table (the files their users download), with random
values, at any size; :mod:`tests.support.published` has the other families
and the OpenMMLab model-zoo layout.

Key names, shapes, orders (``nn.Module.state_dict`` order: a module's own
parameters, then its buffers, then its children) and nestings follow the
public model definitions of each release:

- :func:`eva02_pretrain`: baaivision/EVA EVA-02's MIM pre-training
  checkpoints (``eva02_B_pt_in21k_p14.pt``: ``{'module': ...}``; separate
  ``attn.q_proj/k_proj/v_proj`` weights with ``q_bias`` / ``v_bias``, the
  SwiGLU ``mlp.w1/w2/w3`` (``ffn_ln`` with ``sub_ln``), ``rope.freqs_cos/
  sin`` buffers, ``mask_token``, the last ``norm`` and ``lm_head``).
- :func:`dinov2_pretrain`: facebookresearch/dinov2's hub files
  (``dinov2_vitg14_pretrain.pth``: a flat state dict; ``blocks.N.attn.qkv``,
  ``ls1.gamma`` / ``ls2.gamma``, ``mlp.fc1/fc2`` or the giant's fused
  SwiGLU ``mlp.w12/w3``, ``register_tokens`` in the ``_reg`` files,
  ``mask_token``, ``norm``).
- :func:`sam_original`: facebookresearch/segment-anything's
  ``sam_vit_h_4b8939.pth`` (a flat state dict of the whole ``Sam``:
  ``image_encoder.{pos_embed, patch_embed, blocks.N.attn.{rel_pos_h,
  rel_pos_w, qkv, proj}, mlp.lin1/lin2, neck}``, ``prompt_encoder.*``,
  ``mask_decoder.*``).
- :func:`beit_pretrain`: microsoft/unilm's BEiT / BEiT v2 pre-training
  checkpoints (``beit_base_patch16_224_pt22k.pth``, ``beitv2_base_patch16_
  224_pt1k.pth``: ``{'model': ...}``; ``blocks.N.{gamma_1, gamma_2}``,
  ``attn.{q_bias, v_bias, qkv.weight}``, the shared
  ``rel_pos_bias.relative_position_bias_table``, ``mask_token``, ``norm``,
  ``lm_head``; v2's ``cls_pt_layers``).
"""
from collections import OrderedDict
from typing import Dict, Sequence

import torch

from tests.support.published import _Random


def _grid(img_size: int, patch_size: int) -> int:
    return img_size // patch_size


def eva02_pretrain(path: str,
                   embed_dims: int = 768,
                   num_layers: int = 12,
                   num_heads: int = 12,
                   mlp_dims: int = 2048,
                   patch_size: int = 14,
                   img_size: int = 224,
                   sub_ln: bool = True,
                   seed: int = 0) -> Dict[str, torch.Tensor]:
    """Write EVA-02's MIM pre-training checkpoint (defaults: EVA-02-B/14,
    ``mlp_dims`` = 4 * 2/3 * D, the SwiGLU's ``ffn_ln``: ``sub_ln``, as
    mmpretrain's ``arch='b'`` configs set it); returns its state dict."""
    rand, d, state = _Random(seed), embed_dims, OrderedDict()
    grid, head_dim = _grid(img_size, patch_size), embed_dims // num_heads

    def rope(prefix):
        # VisionRotaryEmbeddingFast: (grid², head_dim) cos / sin tables.
        angle = rand(grid * grid, head_dim)
        state[f'{prefix}freqs_cos'] = angle.cos()
        state[f'{prefix}freqs_sin'] = angle.sin()

    state['cls_token'] = rand(1, 1, d)
    state['mask_token'] = rand(1, 1, d)
    state['pos_embed'] = rand(1, grid * grid + 1, d)
    state['patch_embed.proj.weight'] = rand(d, 3, patch_size, patch_size)
    state['patch_embed.proj.bias'] = rand(d)
    rope('rope.')
    for i in range(num_layers):
        block = f'blocks.{i}'
        state[f'{block}.norm1.weight'] = rand(d, norm=True)
        state[f'{block}.norm1.bias'] = rand(d)
        state[f'{block}.attn.q_bias'] = rand(d)
        state[f'{block}.attn.v_bias'] = rand(d)
        for proj in ('q_proj', 'k_proj', 'v_proj'):
            state[f'{block}.attn.{proj}.weight'] = rand(d, d)
        state[f'{block}.attn.proj.weight'] = rand(d, d)
        state[f'{block}.attn.proj.bias'] = rand(d)
        rope(f'{block}.attn.rope.')
        state[f'{block}.norm2.weight'] = rand(d, norm=True)
        state[f'{block}.norm2.bias'] = rand(d)
        for w in ('w1', 'w2'):
            state[f'{block}.mlp.{w}.weight'] = rand(mlp_dims, d)
            state[f'{block}.mlp.{w}.bias'] = rand(mlp_dims)
        if sub_ln:
            state[f'{block}.mlp.ffn_ln.weight'] = rand(mlp_dims, norm=True)
            state[f'{block}.mlp.ffn_ln.bias'] = rand(mlp_dims)
        state[f'{block}.mlp.w3.weight'] = rand(d, mlp_dims)
        state[f'{block}.mlp.w3.bias'] = rand(d)
    state['norm.weight'] = rand(d, norm=True)
    state['norm.bias'] = rand(d)
    state['lm_head.weight'] = rand(1024, d)  # the EVA-CLIP target width
    state['lm_head.bias'] = rand(1024)
    torch.save(dict(module=state), path)
    return state


def dinov2_pretrain(path: str,
                    embed_dims: int = 1536,
                    num_layers: int = 40,
                    num_heads: int = 24,
                    mlp_dims: int = 6144,
                    patch_size: int = 14,
                    img_size: int = 518,
                    swiglu: bool = True,
                    num_register_tokens: int = 0,
                    seed: int = 0) -> Dict[str, torch.Tensor]:
    """Write DINOv2's hub checkpoint (defaults: ViT-g/14,
    ``dinov2_vitg14_pretrain.pth``; ``swiglu=False`` for S/B/L,
    ``num_register_tokens=4`` for the ``_reg`` files); returns it."""
    del num_heads  # not in any shape: the fused qkv is (3D, D)
    rand, d, state = _Random(seed), embed_dims, OrderedDict()
    state['cls_token'] = rand(1, 1, d)
    state['pos_embed'] = rand(1, _grid(img_size, patch_size)**2 + 1, d)
    if num_register_tokens:
        state['register_tokens'] = rand(1, num_register_tokens, d)
    state['mask_token'] = rand(1, d)
    state['patch_embed.proj.weight'] = rand(d, 3, patch_size, patch_size)
    state['patch_embed.proj.bias'] = rand(d)
    # SwiGLUFFNFused: hidden = (int(mlp_dims * 2 / 3) + 7) // 8 * 8.
    hidden = (int(mlp_dims * 2 / 3) + 7) // 8 * 8
    for i in range(num_layers):
        block = f'blocks.{i}'
        state[f'{block}.norm1.weight'] = rand(d, norm=True)
        state[f'{block}.norm1.bias'] = rand(d)
        state[f'{block}.attn.qkv.weight'] = rand(3 * d, d)
        state[f'{block}.attn.qkv.bias'] = rand(3 * d)
        state[f'{block}.attn.proj.weight'] = rand(d, d)
        state[f'{block}.attn.proj.bias'] = rand(d)
        state[f'{block}.ls1.gamma'] = rand(d)
        state[f'{block}.norm2.weight'] = rand(d, norm=True)
        state[f'{block}.norm2.bias'] = rand(d)
        if swiglu:
            state[f'{block}.mlp.w12.weight'] = rand(2 * hidden, d)
            state[f'{block}.mlp.w12.bias'] = rand(2 * hidden)
            state[f'{block}.mlp.w3.weight'] = rand(d, hidden)
            state[f'{block}.mlp.w3.bias'] = rand(d)
        else:
            state[f'{block}.mlp.fc1.weight'] = rand(mlp_dims, d)
            state[f'{block}.mlp.fc1.bias'] = rand(mlp_dims)
            state[f'{block}.mlp.fc2.weight'] = rand(d, mlp_dims)
            state[f'{block}.mlp.fc2.bias'] = rand(d)
        state[f'{block}.ls2.gamma'] = rand(d)
    state['norm.weight'] = rand(d, norm=True)
    state['norm.bias'] = rand(d)
    torch.save(state, path)
    return state


def _linear(state, rand, name, out, inp, bias=True):
    state[f'{name}.weight'] = rand(out, inp)
    if bias:
        state[f'{name}.bias'] = rand(out)


def _norm(state, rand, name, dims):
    state[f'{name}.weight'] = rand(dims, norm=True)
    state[f'{name}.bias'] = rand(dims)


def _sam_decoder(state,
                 rand,
                 dims: int,
                 depth: int = 2,
                 mlp: int = 2048,
                 masks: int = 4):
    """SAM's ``MaskDecoder`` with its ``TwoWayTransformer``."""
    pre = 'mask_decoder.transformer'

    def attention(name, downsample):
        inner = dims // downsample
        for proj in ('q_proj', 'k_proj', 'v_proj'):
            _linear(state, rand, f'{name}.{proj}', inner, dims)
        _linear(state, rand, f'{name}.out_proj', dims, inner)

    for i in range(depth):
        layer = f'{pre}.layers.{i}'
        attention(f'{layer}.self_attn', 1)
        _norm(state, rand, f'{layer}.norm1', dims)
        attention(f'{layer}.cross_attn_token_to_image', 2)
        _norm(state, rand, f'{layer}.norm2', dims)
        _linear(state, rand, f'{layer}.mlp.lin1', mlp, dims)
        _linear(state, rand, f'{layer}.mlp.lin2', dims, mlp)
        _norm(state, rand, f'{layer}.norm3', dims)
        _norm(state, rand, f'{layer}.norm4', dims)
        attention(f'{layer}.cross_attn_image_to_token', 2)
    attention(f'{pre}.final_attn_token_to_image', 2)
    _norm(state, rand, f'{pre}.norm_final_attn', dims)
    state['mask_decoder.iou_token.weight'] = rand(1, dims)
    state['mask_decoder.mask_tokens.weight'] = rand(masks, dims)
    up = 'mask_decoder.output_upscaling'
    state[f'{up}.0.weight'] = rand(dims, dims // 4, 2, 2)  # ConvTranspose2d
    state[f'{up}.0.bias'] = rand(dims // 4)
    _norm(state, rand, f'{up}.1', dims // 4)  # LayerNorm2d
    state[f'{up}.3.weight'] = rand(dims // 4, dims // 8, 2, 2)
    state[f'{up}.3.bias'] = rand(dims // 8)
    for i in range(masks):
        mlp_pre = f'mask_decoder.output_hypernetworks_mlps.{i}.layers'
        for j, (out, inp) in enumerate(
            ((dims, dims), (dims, dims), (dims // 8, dims))):
            _linear(state, rand, f'{mlp_pre}.{j}', out, inp)
    iou = 'mask_decoder.iou_prediction_head.layers'
    _linear(state, rand, f'{iou}.0', 256, dims)
    _linear(state, rand, f'{iou}.1', 256, 256)
    _linear(state, rand, f'{iou}.2', masks, 256)


def sam_original(path: str,
                 embed_dims: int = 1280,
                 num_layers: int = 32,
                 num_heads: int = 16,
                 mlp_dims: int = 5120,
                 global_attn_indexes: Sequence[int] = (7, 15, 23, 31),
                 patch_size: int = 16,
                 img_size: int = 1024,
                 window_size: int = 14,
                 out_chans: int = 256,
                 seed: int = 0) -> Dict[str, torch.Tensor]:
    """Write SAM's checkpoint (defaults: ViT-H, ``sam_vit_h_4b8939.pth``);
    returns its state dict."""
    rand, d, state = _Random(seed), embed_dims, OrderedDict()
    grid, head_dim = _grid(img_size, patch_size), embed_dims // num_heads
    enc = 'image_encoder'
    state[f'{enc}.pos_embed'] = rand(1, grid, grid, d)
    state[f'{enc}.patch_embed.proj.weight'] = rand(d, 3, patch_size,
                                                   patch_size)
    state[f'{enc}.patch_embed.proj.bias'] = rand(d)
    for i in range(num_layers):
        block = f'{enc}.blocks.{i}'
        size = grid if i in global_attn_indexes else window_size
        _norm(state, rand, f'{block}.norm1', d)
        state[f'{block}.attn.rel_pos_h'] = rand(2 * size - 1, head_dim)
        state[f'{block}.attn.rel_pos_w'] = rand(2 * size - 1, head_dim)
        _linear(state, rand, f'{block}.attn.qkv', 3 * d, d)
        _linear(state, rand, f'{block}.attn.proj', d, d)
        _norm(state, rand, f'{block}.norm2', d)
        _linear(state, rand, f'{block}.mlp.lin1', mlp_dims, d)
        _linear(state, rand, f'{block}.mlp.lin2', d, mlp_dims)
    state[f'{enc}.neck.0.weight'] = rand(out_chans, d, 1, 1)
    _norm(state, rand, f'{enc}.neck.1', out_chans)
    state[f'{enc}.neck.2.weight'] = rand(out_chans, out_chans, 3, 3)
    _norm(state, rand, f'{enc}.neck.3', out_chans)
    pre = 'prompt_encoder'
    state[f'{pre}.pe_layer.positional_encoding_gaussian_matrix'] = rand(
        2, out_chans // 2)
    for i in range(4):
        state[f'{pre}.point_embeddings.{i}.weight'] = rand(1, out_chans)
    state[f'{pre}.not_a_point_embed.weight'] = rand(1, out_chans)
    # mask_downscaling: conv 1->4, LayerNorm2d, GELU, conv 4->16, LN, GELU,
    # conv 16->out_chans (mask_in_chans=16).
    convs = {0: (4, 1, 2), 3: (16, 4, 2), 6: (out_chans, 16, 1)}
    for i, (out, inp, k) in convs.items():
        state[f'{pre}.mask_downscaling.{i}.weight'] = rand(out, inp, k, k)
        state[f'{pre}.mask_downscaling.{i}.bias'] = rand(out)
        if i < 6:
            _norm(state, rand, f'{pre}.mask_downscaling.{i + 1}', out)
    state[f'{pre}.no_mask_embed.weight'] = rand(1, out_chans)
    _sam_decoder(state, rand, out_chans)
    torch.save(state, path)
    return state


def _relative_position_index(window: int) -> torch.Tensor:
    """BEiT's ``relative_position_index`` ((W²+1), (W²+1)) with the three
    extra entries of the class token (cls->token, token->cls, cls->cls)."""
    coords = torch.stack(
        torch.meshgrid(torch.arange(window),
                       torch.arange(window),
                       indexing='ij')).flatten(1)
    relative = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    relative = relative.contiguous()
    relative[:, :, 0] += window - 1
    relative[:, :, 1] += window - 1
    relative[:, :, 0] *= 2 * window - 1
    distances = (2 * window - 1)**2
    index = torch.zeros((window * window + 1, ) * 2, dtype=torch.long)
    index[1:, 1:] = relative.sum(-1)
    index[0, 0:] = distances
    index[0:, 0] = distances + 1
    index[0, 0] = distances + 2
    return index


def beit_pretrain(path: str,
                  embed_dims: int = 768,
                  num_layers: int = 12,
                  num_heads: int = 12,
                  mlp_dims: int = 3072,
                  patch_size: int = 16,
                  img_size: int = 224,
                  version: int = 1,
                  head_layers: int = 2,
                  vocab_size: int = 8192,
                  seed: int = 0) -> Dict[str, torch.Tensor]:
    """Write BEiT's (``version=1``, ``beit_base_patch16_224_pt22k.pth``) or
    BEiT v2's (``version=2``, ``beitv2_base_patch16_224_pt1k.pth``, with
    its ``head_layers`` patch-aggregation blocks ``cls_pt_layers``)
    pre-training checkpoint; returns its state dict."""
    rand, d, state = _Random(seed), embed_dims, OrderedDict()
    window = _grid(img_size, patch_size)

    def block(name):
        state[f'{name}.gamma_1'] = rand(d)
        state[f'{name}.gamma_2'] = rand(d)
        _norm(state, rand, f'{name}.norm1', d)
        state[f'{name}.attn.q_bias'] = rand(d)
        state[f'{name}.attn.v_bias'] = rand(d)
        state[f'{name}.attn.qkv.weight'] = rand(3 * d, d)
        _linear(state, rand, f'{name}.attn.proj', d, d)
        _norm(state, rand, f'{name}.norm2', d)
        _linear(state, rand, f'{name}.mlp.fc1', mlp_dims, d)
        _linear(state, rand, f'{name}.mlp.fc2', d, mlp_dims)

    state['cls_token'] = rand(1, 1, d)
    state['mask_token'] = rand(1, 1, d)
    state['patch_embed.proj.weight'] = rand(d, 3, patch_size, patch_size)
    state['patch_embed.proj.bias'] = rand(d)
    state['rel_pos_bias.relative_position_bias_table'] = rand(
        (2 * window - 1)**2 + 3, num_heads)
    state['rel_pos_bias.relative_position_index'] = \
        _relative_position_index(window)
    for i in range(num_layers):
        block(f'blocks.{i}')
    if version == 2:
        for i in range(head_layers):
            block(f'cls_pt_layers.{i}')
    _norm(state, rand, 'norm', d)
    _linear(state, rand, 'lm_head', vocab_size, d)
    torch.save(dict(model=state), path)
    return state


#: Tiny sizes of each layout (the published sizes are the defaults).
TINY_UPSTREAM = dict(
    eva02=dict(embed_dims=32,
               num_layers=2,
               num_heads=2,
               mlp_dims=48,
               patch_size=8,
               img_size=32),
    dinov2=dict(embed_dims=32,
                num_layers=2,
                num_heads=2,
                mlp_dims=48,
                patch_size=8,
                img_size=32),
    sam=dict(embed_dims=32,
             num_layers=2,
             num_heads=2,
             mlp_dims=64,
             global_attn_indexes=(1, ),
             patch_size=8,
             img_size=40,
             window_size=3,
             out_chans=16),
    beit=dict(embed_dims=32,
              num_layers=2,
              num_heads=2,
              mlp_dims=64,
              patch_size=8,
              img_size=32,
              vocab_size=16),
)
