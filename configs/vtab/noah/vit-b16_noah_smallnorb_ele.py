_base_ = ['../_base_/noah.py']
from mmpetl.datasets import vtab1k_task

task = 'smallnorb_ele'
model = dict(head=dict(num_classes=vtab1k_task(task).num_classes))
train_dataloader = dict(dataset=dict(task=task))
val_dataloader = dict(dataset=dict(task=task))
test_dataloader = dict(dataset=dict(task=task))
