# ViT-B/16 pre-trained on ImageNet-21k, the start of both papers: convert
# Google's imagenet21k/ViT-B_16.npz with tools/model_converters/vit_npz2mmpretrain.py.
pretrained = 'checkpoints/vit-b16_in21k.pth'
backbone = dict(
    type='VisionTransformer',
    arch='b',
    img_size=224,
    patch_size=16,
    drop_path_rate=0.1,
    init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                  prefix='backbone.'))
neck = None
feat_dims = 768
