# RetinaNet with Swin-L (ImageNet-22k) on Pascal VOC, the setting of E3VA's
# benchmark code (V-PETL Bench): the Swin's stages 1-3 feed the FPN
# (out_indices=(1, 2, 3)), VOC07+12 trainval, 1000x600, the dataset repeated
# 3 times for 4 epochs (= 12), AdamW lr 1e-4, mixed precision (mmengine's
# AmpOptimWrapper), batch 16 (8 GPUs x 2); mmdet's RetinaNet VOC config
# otherwise (lr steps after epoch 3, VOC07 test, 11-point mAP). Weight decay
# 0.05, no-decay keys and drop-path 0.2 are mmdet's RetinaNet Swin recipe
# (not stated by the benchmark).
_base_ = ['mmdet::pascal_voc/retinanet_r50_fpn_1x_voc0712.py']
# The official checkpoint as released (github.com/microsoft/Swin-Transformer).
pretrained = 'pretrain/swin_large_patch4_window7_224_22k.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        embed_dims=192,
        depths=[2, 2, 18, 2],
        num_heads=[6, 12, 24, 48],
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.2,
        patch_norm=True,
        out_indices=(1, 2, 3),
        with_cp=False,
        convert_weights=True,
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[384, 768, 1536], start_level=0, num_outs=5))
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(
        _delete_=True,
        type='AdamW',
        lr=1e-4,
        betas=(0.9, 0.999),
        weight_decay=0.05),
    paramwise_cfg=dict(
        custom_keys={
            'absolute_pos_embed': dict(decay_mult=0.),
            'relative_position_bias_table': dict(decay_mult=0.),
            'norm': dict(decay_mult=0.)
        }))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
