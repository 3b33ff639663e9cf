# Few-shot (NOAH's benchmark, RepAdapter's few-shot table): five
# fine-grained sets, K = 1/2/4/8/16 training images per class, three
# sampled lists per K (seeds 0, 1, 2: tools/suites/vtab.py --seeds 3).
# RepAdapter's few-shot recipe (its train.py --few-shot): the VTAB-1k
# optimizer and schedule (AdamW lr 1e-3, wd 1e-4, batch 64, 100 epochs,
# 10 warm-up epochs, cosine to 1e-5) with timm's training augmentation
# (random resized crop, flip, RandAugment rand-m9-mstd0.5-inc1, random
# erasing 0.25 per pixel), Mixup 0.8 / CutMix 1.0 (one of them per batch)
# and label smoothing 0.1; test images resized to 224x224 (bicubic).
# Deviation: the last incomplete batch is kept (the reference drops it,
# which leaves no batch at all when K x classes < 64, e.g. 1-shot pets).
# Train on the K-shot list, report top-1 on test_meta.list once; the
# search (--search) evaluates on val_meta.list.
_base_ = ['../../vtab/_base_/vtab1k.py']

data_root = 'data/few-shot'
bgr_mean = _base_.data_preprocessor.mean[::-1]
bgr_std = _base_.data_preprocessor.std[::-1]

model = dict(
    head=dict(
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                  mode='original')),
    train_cfg=dict(augments=[
        dict(type='Mixup', alpha=0.8),
        dict(type='CutMix', alpha=1.0),
    ]))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=224, backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='RandAugment', policies='timm_increasing', num_policies=2,
         total_level=10, magnitude_level=9, magnitude_std=0.5,
         hparams=dict(pad_val=[round(x) for x in bgr_mean],
                      interpolation='bicubic')),
    dict(type='RandomErasing', erase_prob=0.25, mode='rand',
         min_area_ratio=0.02, max_area_ratio=1 / 3, fill_color=bgr_mean,
         fill_std=bgr_std),
    dict(type='PackInputs'),
]
test_pipeline = _base_.pipeline

train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='mmpetl.FewShot',
        name=None,
        data_root=data_root,
        split='train',
        shots=None,
        seed=0,
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type='mmpetl.FewShot',
        name=None,
        data_root=data_root,
        split='test',
        pipeline=test_pipeline))
test_dataloader = val_dataloader
