_base_ = ['../_base_/fact-tt.py']
from mmpetl.datasets import vtab1k_task

task = 'dmlab'
model = dict(
    backbone=dict(rank=16, scale=10.0),
    head=dict(num_classes=vtab1k_task(task).num_classes))
train_dataloader = dict(dataset=dict(task=task))
val_dataloader = dict(dataset=dict(task=task))
test_dataloader = dict(dataset=dict(task=task))
