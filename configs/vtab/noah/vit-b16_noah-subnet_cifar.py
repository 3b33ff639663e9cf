# NOAH stage 3 on VTAB-1k CIFAR-100 with the subnet the reference publishes
# for it (ZhangYuanhan-AI/NOAH experiments/NOAH/subnet/VTAB/
# ViT-B_prompt_cifar100.yaml, RETRAIN): train it with tools/train.py. The
# suite writes such a config per task from its own search.
_base_ = ['../_base_/noah-subnet.py']
from mmpetl.datasets import vtab1k_task

task = 'cifar'
model = dict(
    backbone=dict(
        arch=dict(
            prompt=[10, 5, 10, 1, 5, 1, 10, 1, 10, 5, 1, 10],
            lora=[10, 1, 5, 5, 1, 10, 1, 1, 1, 10, 1, 1],
            adapter=[5, 10, 10, 10, 5, 1, 1, 1, 10, 10, 10, 1])),
    head=dict(num_classes=vtab1k_task(task).num_classes))
train_dataloader = dict(dataset=dict(task=task))
val_dataloader = dict(dataset=dict(task=task))
test_dataloader = dict(dataset=dict(task=task))
