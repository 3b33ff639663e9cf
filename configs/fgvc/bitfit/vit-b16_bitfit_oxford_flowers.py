_base_ = ['../../vtab/_base_/bitfit.py', '../_base_/fgvc.py']
from mmpetl.datasets import fgvc_set

name = 'oxford_flowers'
model = dict(
    head=dict(num_classes=fgvc_set(name).num_classes))
train_dataloader = dict(dataset=dict(_base_.fgvc_train, _delete_=True,
                                     name=name))
val_dataloader = dict(dataset=dict(_base_.fgvc_test, _delete_=True,
                                   name=name))
test_dataloader = val_dataloader
