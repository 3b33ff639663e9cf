_base_ = ['../_base_/swin-b_arc.py']
from mmpetl.datasets import vtab1k_task

task = 'cifar'
model = dict(head=dict(num_classes=vtab1k_task(task).num_classes))
# train_ARC_swin.py's values for this task
optim_wrapper = dict(optimizer=dict(lr=5e-3, weight_decay=1e-2))
train_dataloader = dict(dataset=dict(task=task))
val_dataloader = dict(dataset=dict(task=task))
test_dataloader = dict(dataset=dict(task=task))
