_base_ = ['../_base_/ssf.py']
from mmpetl.datasets import vtab1k_task

task = 'caltech101'
model = dict(
    backbone=dict(backbone=dict(drop_path_rate=0.1)),
    head=dict(num_classes=vtab1k_task(task).num_classes))
train_dataloader = dict(
    batch_size=128, dataset=dict(task=task))
val_dataloader = dict(dataset=dict(task=task))
test_dataloader = dict(dataset=dict(task=task))
optim_wrapper = dict(optimizer=dict(lr=0.001, weight_decay=0.05))
train_cfg = dict(max_epochs=250, val_interval=250)
param_scheduler = [dict(_base_.param_scheduler[0], T=250)]
