# Baseline: LoRA (mmpretrain's own LoRAModel) on the fused qkv projection,
# rank 8, alpha 8 (the PETL papers' LoRA baseline, 0.29M for ViT-B/16).
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='LoRAModel',
        module=_base_.backbone,
        alpha=8,
        rank=8,
        drop_rate=0.1,
        targets=[dict(type='qkv')]))
