# VideoMAE ViT-B/16 (16 frames, 224x224) on mmaction2's own VideoMAE config,
# with the PETL training recipe shared by the video datasets. Methods differ
# only in `model.backbone` (and full fine-tuning in its learning rate).
# Put the pre-trained weights (recognizer layout, `backbone.` keys) at
# `pretrained`; see the README's video section.
_base_ = [
    'mmaction::recognition/videomae/'
    'vit-base-p16_videomae-k400-pre_16x4x1_kinetics-400.py'
]

pretrained = 'checkpoints/vit-base-p16_videomae-k400-pre.pth'
vit_b = dict(
    type='VisionTransformer',
    img_size=224,
    patch_size=16,
    embed_dims=768,
    depth=12,
    num_heads=12,
    mlp_ratio=4,
    qkv_bias=True,
    num_frames=16,
    norm_cfg=dict(type='LN', eps=1e-6),
    drop_path_rate=0.1,
    init_cfg=dict(type='Pretrained', checkpoint=pretrained,
                  prefix='backbone.'))
model = dict(backbone=vit_b)

# Recipe (assumption, see README): AdamW lr 1e-3, wd 1e-4, batch 64
# (8 GPUs x 8 clips), linear warm-up then cosine decay, per epoch.
optim_wrapper = dict(
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=1e-4),
    clip_grad=dict(max_norm=5.0))
warmup_epochs = 5
max_epochs = 30
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, begin=0,
         end=warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=warmup_epochs,
         eta_min=1e-6, convert_to_iter_based=True),
]
train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_begin=1, val_interval=5)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
val_evaluator = dict(type='AccMetric')
test_evaluator = val_evaluator
default_hooks = dict(
    checkpoint=dict(interval=5, max_keep_ckpts=2, save_best=None),
    logger=dict(interval=100))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
auto_scale_lr = dict(enable=False, base_batch_size=64)
