# Baseline: mmpretrain's LoRAModel on the fused qkv projection, rank 8.
_base_ = ['./transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='LoRAModel',
        module=_base_.pretrained_vit,
        alpha=8,
        rank=8,
        drop_rate=0.1,
        targets=[dict(type='qkv')]))
