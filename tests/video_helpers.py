# Copyright (c) mmpetl contributors. All rights reserved.
"""Tiny mmaction2 backbones for the video tests."""
from tests.helpers import pretrained_cfg

# VideoMAE ViT: 4 frames of 32x32, tubelets 2x8x8 -> 2x4x4 tokens.
TINY_VIDEO_VIT = dict(
    type='mmaction.VisionTransformer',
    img_size=32,
    patch_size=8,
    embed_dims=32,
    depth=2,
    num_heads=2,
    mlp_ratio=2,
    num_frames=4,
    tubelet_size=2,
    norm_cfg=dict(type='LN', eps=1e-6))

# Video Swin: 4x40x40 clips give 2x10x10 and 2x5x5 tokens; windows of 2x3x3
# (shifted by 1x1x1) need padding in both stages.
TINY_SWIN3D = dict(
    type='mmaction.SwinTransformer3D',
    arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2]),
    pretrained2d=False,
    patch_size=(2, 4, 4),
    window_size=(2, 3, 3),
    drop_path_rate=0.,
    out_indices=(1, ))


def video_pretrained_cfg(backbone_cfg, path, seed=1):
    """A 'pre-trained' checkpoint of a stock backbone with every parameter
    perturbed (non-zero q/v biases, non-trivial norms), and the config that
    loads it."""
    return pretrained_cfg(backbone_cfg, path, seed=seed, perturb=0.05)
