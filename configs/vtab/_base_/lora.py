# Baseline: LoRA on the fused qkv projection, rank 8, alpha 8 (the PETL
# papers' LoRA baseline, 0.29M for ViT-B/16); folds exactly.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRABackbone',
        backbone=_base_.backbone,
        rank=8,
        alpha=8,
        dropout=0.1))
