# Baseline: LoRA on the fused qkv projection, rank 8; folds exactly.
_base_ = ['./transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRABackbone',
        backbone=_base_.pretrained_vit,
        rank=8,
        alpha=8,
        dropout=0.1))
