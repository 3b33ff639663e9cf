# Swin-B (window 7, 224) pre-trained on ImageNet-22k: the official
# swin_base_patch4_window7_224_22k.pth converted to OpenMMLab keys (README,
# "Pre-trained weights"). One dict, so that it can sit beside a method base
# (swin-b_repadapter.py, swin-b_arc.py) without clashing with its keys.
swin_b = dict(
    backbone=dict(
        type='SwinTransformer',
        arch='base',
        img_size=224,
        drop_path_rate=0.1,
        init_cfg=dict(
            type='Pretrained', checkpoint='checkpoints/swin-b_in22k.pth')),
    neck=dict(type='GlobalAveragePooling'),
    feat_dims=1024)
