# Video Swin-B on Kinetics-400: mmaction2's own config and recipe (full
# fine-tuning: AdamW lr 1e-3, backbone lr x 0.1, wd 0.05, 30 epochs), with
# the backbone inflated from the ImageNet-22k Swin-B checkpoint at
# `pretrained` (official Swin layout; see the README's video section).
_base_ = [
    'mmaction::recognition/swin/'
    'swin-base-p244-w877_in1k-pre_8xb8-amp-32x2x1-30e_kinetics400-rgb.py'
]

pretrained = 'checkpoints/swin_base_patch4_window7_224_22k.pth'
swin_b = dict(
    type='SwinTransformer3D',
    arch='base',
    pretrained=pretrained,
    pretrained2d=True,
    patch_size=(2, 4, 4),
    window_size=(8, 7, 7),
    mlp_ratio=4.,
    qkv_bias=True,
    drop_path_rate=0.3,
    patch_norm=True)
model = dict(backbone=swin_b)
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
