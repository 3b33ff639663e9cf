# RepAdapter on mmpretrain's own ViT-B/16 ImageNet recipe: only the backbone
# changes. Put the pre-trained weights (mmpretrain layout) at `pretrained`.
_base_ = ['mmpretrain::vision_transformer/vit-base-p16_64xb64_in1k.py']

pretrained = 'checkpoints/vit-base-p16_in21k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.RepAdapterBackbone',
        backbone=dict(
            type='VisionTransformer',
            arch='b',
            img_size=224,
            patch_size=16,
            drop_path_rate=0.1,
            init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
        scale=1.0))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
