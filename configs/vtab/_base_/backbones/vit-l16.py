# ViT-L/16 pre-trained on ImageNet-21k: convert Google's
# imagenet21k/ViT-L_16.npz with tools/model_converters/vit_npz2mmpretrain.py.
pretrained = 'checkpoints/vit-l16_in21k.pth'
backbone = dict(
    type='VisionTransformer',
    arch='l',
    img_size=224,
    patch_size=16,
    drop_path_rate=0.1,
    init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                  prefix='backbone.'))
neck = None
feat_dims = 1024
