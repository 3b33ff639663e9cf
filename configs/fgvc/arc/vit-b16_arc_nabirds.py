_base_ = ['../../vtab/_base_/arc.py', '../_base_/fgvc.py']
from mmpetl.datasets import fgvc_set

name = 'nabirds'
# The ARC authors' FGVC values for this set (DavidYanAnDe/ARC issue #1):
# lr, wd, adapter dropout (a_drop) and the ViT's dropout (v_drop).
model = dict(
    backbone=dict(dropout=0.1, backbone=dict(drop_rate=0.1)),
    head=dict(num_classes=fgvc_set(name).num_classes))
optim_wrapper = dict(optimizer=dict(lr=2e-4, weight_decay=5e-2))
train_dataloader = dict(dataset=dict(_base_.fgvc_train, _delete_=True,
                                     name=name))
val_dataloader = dict(dataset=dict(_base_.fgvc_test, _delete_=True,
                                   name=name))
test_dataloader = val_dataloader
