# Copyright (c) mmpetl contributors. All rights reserved.
"""Tiny mmaction2 backbones for the video tests."""
from tests.support.helpers import pretrained_cfg

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


#: Adapter methods run on the video backbones.
VIDEO_METHODS = {
    'repadapter': dict(type='mmpetl.RepAdapterBackbone', scale=2.0),
    'arc': dict(type='mmpetl.ARCBackbone', hidden_dim=6),
}

#: A video recognition config for the tools on tiny motion data.
VIDEO_TOOL_CONFIG = """
_base_ = ['mmaction::_base_/default_runtime.py']
data_root = '{data}'
model = dict(
    type='Recognizer3D',
    backbone=dict(type='mmpetl.{method}', backbone={backbone}, {options}),
    cls_head=dict(type='{head}', num_classes=3, in_channels=32,
                  average_clips='prob'),
    data_preprocessor=dict(
        type='ActionDataPreprocessor',
        mean=[123.675, 116.28, 103.53],
        std=[58.395, 57.12, 57.375],
        format_shape='NCTHW'))
train_pipeline = [
    dict(type='SampleFrames', clip_len=4, frame_interval=2, num_clips=1),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
test_pipeline = [
    dict(type='SampleFrames', clip_len=4, frame_interval=2, num_clips=1,
         test_mode=True),
    dict(type='RawFrameDecode'),
    dict(type='Resize', scale=({size}, {size}), keep_ratio=False),
    dict(type='FormatShape', input_format='NCTHW'),
    dict(type='PackActionInputs'),
]
train_dataloader = dict(
    batch_size=6, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type='RawframeDataset', ann_file=data_root + '/train.txt',
                 data_prefix=dict(img=data_root + '/rawframes'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=6, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='RawframeDataset', ann_file=data_root + '/test.txt',
                 data_prefix=dict(img=data_root + '/rawframes'),
                 pipeline=test_pipeline, test_mode=True))
test_dataloader = val_dataloader
val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=1, val_interval=1)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-2, weight_decay=0.))
default_hooks = dict(checkpoint=dict(interval=1, save_best=None),
                     logger=dict(interval=1))
custom_hooks = [dict(type='mmpetl.ParameterCountHook'),
                dict(type='mmpetl.ReparamCheckpointHook')]
randomness = dict(seed=0)
"""
