# SSF (Lian et al.): a scale and shift after every operation with
# per-channel weights. Its VTAB-1k recipe (dongzelian/SSF
# train_scripts/vit/vtab/*/train_ssf.sh): AdamW, timm's cosine stepped per
# epoch (10 warm-up epochs from 1e-7, down to 1e-8), no augmentation, no
# mixup / label smoothing. Per task (set in the per-task files): lr, weight
# decay, drop-path, total batch and epochs; the values here are the most
# common ones. Folds exactly.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.SSFBackbone',
        backbone=dict(_base_.backbone, drop_path_rate=0.)))
train_dataloader = dict(batch_size=64)
optim_wrapper = dict(optimizer=dict(lr=5e-3, weight_decay=5e-5))
param_scheduler = [
    dict(type='mmpetl.TimmCosineLR', T=_base_.max_epochs,
         warmup=_base_.warmup_epochs, warmup_start=1e-7, eta_min=1e-8,
         lag=1, by_epoch=True),
]
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
