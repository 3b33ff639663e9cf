_base_ = [
    './cascade-mask-rcnn_swin-in22k_fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
# The official checkpoint as released (github.com/microsoft/Swin-Transformer).
pretrained = 'pretrain/swin_large_patch4_window7_224_22k.pth'
model = dict(
    backbone=dict(
        embed_dims=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))
