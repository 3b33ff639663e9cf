# RepAdapter on mmpretrain's own ViT-B/16 ImageNet recipe: only the backbone
# changes. Put the pre-trained weights at `pretrained`: a classifier
# checkpoint (keys `backbone.*`, as tools/model_converters/vit_npz2mmpretrain.py
# writes), hence prefix='backbone.'.
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
            init_cfg=dict(
                type='Pretrained', checkpoint=pretrained,
                prefix='backbone.')),
        scale=1.0))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
