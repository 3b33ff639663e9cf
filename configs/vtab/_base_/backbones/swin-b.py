# Swin-B (window 7, 224) pre-trained on ImageNet-22k: the official
# swin_base_patch4_window7_224_22k.pth converted to OpenMMLab keys (README,
# "Pre-trained weights").
pretrained = 'checkpoints/swin-b_in22k.pth'
backbone = dict(
    type='SwinTransformer',
    arch='base',
    img_size=224,
    drop_path_rate=0.1,
    init_cfg=dict(type='Pretrained', checkpoint=pretrained))
neck = dict(type='GlobalAveragePooling')
feat_dims = 1024
