_base_ = ['../_base_/ssf.py']
from mmpetl.datasets import vtab1k_task

task = 'eurosat'
model = dict(
    backbone=dict(backbone=dict(drop_path_rate=0.2)),
    head=dict(num_classes=vtab1k_task(task).num_classes))
train_dataloader = dict(
    batch_size=64, dataset=dict(task=task))
val_dataloader = dict(dataset=dict(task=task))
test_dataloader = dict(dataset=dict(task=task))
optim_wrapper = dict(optimizer=dict(lr=0.003, weight_decay=0.05))
