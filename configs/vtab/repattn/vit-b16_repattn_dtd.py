_base_ = ['../_base_/repattn.py']
from mmpetl.datasets.vtab1k import repattn_scale, vtab1k_task

task = 'dtd'
model = dict(
    backbone=dict(scale=repattn_scale(task)),
    head=dict(num_classes=vtab1k_task(task).num_classes))
train_dataloader = dict(dataset=dict(task=task))
val_dataloader = dict(dataset=dict(task=task))
test_dataloader = dict(dataset=dict(task=task))
