# Baseline: DoRA (Liu et al.), LoRA's magnitude-direction decomposition on
# the fused qkv, rank 8, alpha 8: LoRA's recipe and placement (the DoRA
# paper has no VTAB-1k recipe); folds exactly.
_base_ = ['./lora.py']

model = dict(backbone=dict(dora=True))
