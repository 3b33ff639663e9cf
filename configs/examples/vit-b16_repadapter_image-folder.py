# RepAdapter on ViT-B/16 (ImageNet-21k weights) trained on your own images,
# one folder per class (mmpretrain's CustomDataset; class names are the
# folder names, sorted):
#   data/my_images/train/<class>/*.jpg
#   data/my_images/val/<class>/*.jpg
# The VTAB-1k recipe of ../vtab/_base_/repadapter.py with the data swapped;
# set num_classes to your number of class folders. See docs/en/own_data.md.
_base_ = ['../vtab/_base_/repadapter.py']

data_root = 'data/my_images'
num_classes = 3
max_epochs = 30
warmup_epochs = 3

model = dict(head=dict(num_classes=num_classes))

train_dataloader = dict(
    batch_size=32,
    drop_last=False,  # a small folder may hold less than one batch
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='train',
        pipeline=_base_.pipeline))
val_dataloader = dict(
    batch_size=64,
    dataset=dict(
        _delete_=True,
        type='CustomDataset',
        data_root=data_root,
        data_prefix='val',
        pipeline=_base_.pipeline))
test_dataloader = val_dataloader

param_scheduler = [
    dict(type='mmpetl.TimmCosineLR', T=max_epochs, warmup=warmup_epochs,
         warmup_start=1e-6, eta_min=1e-5, lag=1, by_epoch=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=5)
auto_scale_lr = dict(base_batch_size=32)
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    # Writes the folded (stock) checkpoint next to the last adapter one.
    dict(type='mmpetl.ReparamCheckpointHook'),
]
