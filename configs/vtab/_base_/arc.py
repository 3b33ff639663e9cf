# ARC (Dong et al.): shared D (hidden 50) per site kind, per-layer lambda
# and bias. Its VTAB-1k recipe (DavidYanAnDe/ARC vtab_ARC_train.py): AdamW
# lr 1e-2, wd 0, batch 32 without drop_last, grad-clip 1.0, 10 warm-up
# epochs then cosine to 0, stepped per iteration, zero-initialised head,
# adapter dropout 0.1, and no drop-path (its ViT has no DropPath).
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.ARCBackbone',
        backbone=dict(_base_.backbone, drop_path_rate=0.),
        hidden_dim=50,
        dropout=0.1),
    head=dict(init_cfg=dict(
        _delete_=True, type='Constant', layer='Linear', val=0.)))
train_dataloader = dict(batch_size=32, drop_last=False)
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
