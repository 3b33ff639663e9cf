# ARC (Dong et al.): shared D (hidden 50) per site kind, per-layer lambda
# and bias. Its VTAB-1k recipe: AdamW lr 1e-2, wd 0, batch 32, grad-clip
# 1.0, 10 warm-up epochs then cosine to 0, zero-initialised head.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.ARCBackbone',
        backbone=_base_.backbone,
        hidden_dim=50,
        dropout=0.1),
    head=dict(init_cfg=dict(type='Constant', layer='Linear', val=0.)))
train_dataloader = dict(batch_size=32)
optim_wrapper = dict(
    optimizer=dict(lr=1e-2, weight_decay=0.),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-4, by_epoch=True, begin=0,
         end=_base_.warmup_epochs, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', by_epoch=True, begin=_base_.warmup_epochs,
         end=_base_.max_epochs,
         T_max=_base_.max_epochs - _base_.warmup_epochs, eta_min=0.,
         convert_to_iter_based=True),
]
auto_scale_lr = dict(base_batch_size=32)
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
