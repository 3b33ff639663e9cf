# Cascade Mask R-CNN with a Swin backbone on COCO, 3x schedule (mmdet's
# multi-scale 3x recipe: 12 epochs over the training set repeated 3 times),
# batch 16 (8 GPUs x 2), AdamW lr 1e-4, weight decay 0.05 (METHODS.md).
# The size-specific bases set the Swin arch and the official ImageNet-22k
# checkpoint, which mmdet's Swin converts while loading
# (convert_weights=True, mmdet's swin_converter).
_base_ = ['mmdet::cascade_rcnn/cascade-mask-rcnn_r50_fpn_ms-3x_coco.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='SwinTransformer',
        window_size=7,
        mlp_ratio=4,
        qkv_bias=True,
        qk_scale=None,
        drop_rate=0.,
        attn_drop_rate=0.,
        drop_path_rate=0.3,
        patch_norm=True,
        out_indices=(0, 1, 2, 3),
        with_cp=False,
        convert_weights=True))
optim_wrapper = dict(
    type='OptimWrapper',
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
val_evaluator = dict(metric=['bbox', 'segm'])
test_evaluator = val_evaluator
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
