# Copyright (c) mmpetl contributors. All rights reserved.
"""Backbone rows shared by the method tests: tiny configs of every family
of the attach table with their input shapes, the real-size ViT-B/16 and
Swin-B for exact counts, and parameter helpers."""
import copy

from mmengine.config import ConfigDict

from mmpetl.registry import MODELS

from tests.support.helpers import TINY_SWIN, TINY_VIT
from tests.support.video import TINY_SWIN3D, TINY_VIDEO_VIT

_TINY_ARCH = dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64)

#: name -> (stock config, input shapes without batch: the second one needs
#: window padding where the backbone pads, or another size)
BACKBONES = {
    'deit3': (dict(type='mmpretrain.DeiT3', arch=_TINY_ARCH, img_size=32,
                   patch_size=8), [(3, 32, 32)]),
    'clip': (dict(type='mmpretrain.VisionTransformer', arch=_TINY_ARCH,
                  img_size=32, patch_size=8, pre_norm=True),
             [(3, 32, 32)]),
    'dinov2': (dict(type='mmpretrain.VisionTransformer', arch=_TINY_ARCH,
                    img_size=32, patch_size=8, layer_scale_init_value=0.5,
                    layer_cfgs=dict(ffn_type='swiglu_fused')),
               [(3, 32, 32)]),
    'beit': (dict(type='mmpretrain.BEiTViT', arch=_TINY_ARCH, img_size=32,
                  patch_size=8), [(3, 32, 32)]),
    'beit_qkv_bias': (dict(type='mmpretrain.BEiTViT', arch=_TINY_ARCH,
                           img_size=32, patch_size=8, bias=True),
                      [(3, 32, 32)]),
    'eva02': (dict(type='mmpretrain.ViTEVA02',
                   arch=dict(_TINY_ARCH, feedforward_channels=48),
                   img_size=32, patch_size=8), [(3, 32, 32)]),
    # 8x8 and 4x4 tokens (no padding); 10x10 and 5x5 (windows of 4 pad).
    'swinv2': (dict(type='mmpretrain.SwinTransformerV2',
                    arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2],
                              extra_norm_every_n_blocks=0),
                    img_size=32, patch_size=4, window_size=[4, 4],
                    pad_small_map=True, out_indices=(0, 1)),
               [(3, 32, 32), (3, 40, 40)]),
    # 5x5 tokens in windows of 3: padded after the norm.
    'sam': (dict(type='mmpretrain.ViTSAM',
                 arch=dict(_TINY_ARCH, global_attn_indexes=[1]),
                 img_size=40, patch_size=8, window_size=3, out_channels=16),
            [(3, 40, 40)]),
    'convnext': (dict(type='mmpretrain.ConvNeXt',
                      arch=dict(depths=[2, 2], channels=[16, 32]),
                      layer_scale_init_value=1.0, out_indices=(0, 1)),
                 [(3, 32, 32), (3, 40, 24)]),
    'seg_vit': (dict(type='mmseg.VisionTransformer', img_size=32,
                     patch_size=8, embed_dims=32, num_layers=2, num_heads=2,
                     mlp_ratio=2, out_indices=(1, )),
                [(3, 32, 32), (3, 40, 24)]),
}

#: Every backbone row of the attach table: (config, input shapes).
ROWS = dict(
    BACKBONES,
    vit=(TINY_VIT, [(3, 32, 32)]),
    swin=(TINY_SWIN, [(3, 72, 72), (3, 56, 56)]),
    seg_swin=(dict(type='mmseg.SwinTransformer', pretrain_img_size=56,
                   embed_dims=16, depths=(2, 2), num_heads=(2, 2),
                   strides=(4, 2), window_size=7, out_indices=(0, 1)),
              [(3, 72, 72)]),
    det_swin=(dict(type='mmdet.SwinTransformer', pretrain_img_size=56,
                   embed_dims=16, depths=(2, 2), num_heads=(2, 2),
                   strides=(4, 2), window_size=7, out_indices=(0, 1)),
              [(3, 72, 72)]),
    videomae=(TINY_VIDEO_VIT, [(3, 4, 32, 32)]),
    swin3d=(TINY_SWIN3D, [(3, 4, 40, 40)]),
)

VIT_B = dict(type='mmpretrain.VisionTransformer', arch='b', img_size=224,
             patch_size=16)
SWIN_B = dict(type='mmpretrain.SwinTransformer', arch='b', img_size=224)


def trainable(model):
    return {n: p for n, p in model.named_parameters() if p.requires_grad}


def rep_adapter_params(width, hidden=8, groups=2):
    # A: d -> h with bias; B: block-diagonal h -> d, (d, h / g), with bias.
    return width * hidden + hidden + width * hidden // groups + width


def arc_params(widths_per_group, hidden):
    # One D (d x h) per share group; lambda (h) and b (d) per site.
    return sum(d * hidden + n * (hidden + d)
               for d, n in widths_per_group)


def stock(backbone_cfg):
    model = MODELS.build(ConfigDict(copy.deepcopy(backbone_cfg)))
    model.init_weights()
    return model
