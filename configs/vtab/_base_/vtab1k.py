# VTAB-1k, shared by every method: the RepAdapter reference code's recipe
# (luogen1996/RepAdapter train.py, dataset.py): AdamW lr 1e-3, wd 1e-4,
# batch 64 with drop_last (15 iterations per epoch), 100 epochs, timm's
# CosineLRScheduler stepped once per epoch (10 warm-up epochs from 1e-6,
# cosine to 1e-5; mmpetl.TimmCosineLR), images decoded and resized to
# 224x224 by PIL (bicubic, antialiased), ImageNet mean/std, no augmentation,
# drop-path 0.1, PyTorch's default init of the head's linear. Train on
# train800val200, evaluate on test once, after the last epoch (no
# checkpoint selection on test).
# A per-task config sets `task` in the three dataloaders and the head's
# class count (mmpetl.datasets.VTAB1K_TASKS).
_base_ = ['mmpretrain::_base_/default_runtime.py', './backbones/vit-b16.py']

data_root = 'data/vtab-1k'
max_epochs = 100
warmup_epochs = 10

model = dict(
    type='ImageClassifier',
    backbone=_base_.backbone,
    neck=_base_.neck,
    head=dict(
        type='LinearClsHead',
        num_classes=None,
        in_channels=_base_.feat_dims,
        loss=dict(type='CrossEntropyLoss'),
        topk=(1, ),
        # nn.Linear's own init (timm's reset_classifier), not mmpretrain's
        # Normal(std=0.01)
        init_cfg=None))

data_preprocessor = dict(
    mean=[123.675, 116.28, 103.53],
    std=[58.395, 57.12, 57.375],
    to_rgb=True)

# PIL decodes and resizes, as torchvision does in the reference code (cv2's
# bicubic does not antialias when it downsamples).
pipeline = [
    dict(type='LoadImageFromFile', imdecode_backend='pillow'),
    dict(type='Resize', scale=(224, 224), interpolation='bicubic',
         backend='pillow'),
    dict(type='PackInputs'),
]
train_dataloader = dict(
    batch_size=64,
    num_workers=4,
    persistent_workers=True,
    drop_last=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(
        type='mmpetl.VTAB1k',
        task=None,
        data_root=data_root,
        split='train800val200',
        pipeline=pipeline))
val_dataloader = dict(
    batch_size=128,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        type='mmpetl.VTAB1k',
        task=None,
        data_root=data_root,
        split='test',
        pipeline=pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=1e-3, weight_decay=1e-4))
param_scheduler = [
    dict(type='mmpetl.TimmCosineLR', T=max_epochs, warmup=warmup_epochs,
         warmup_start=1e-6, eta_min=1e-5, lag=1, by_epoch=True),
]
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
val_cfg = dict()
test_cfg = dict()
auto_scale_lr = dict(base_batch_size=64)

default_hooks = dict(
    logger=dict(type='LoggerHook', interval=5),
    checkpoint=dict(type='CheckpointHook', interval=10, max_keep_ckpts=1,
                    save_last=True))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
randomness = dict(seed=42)
