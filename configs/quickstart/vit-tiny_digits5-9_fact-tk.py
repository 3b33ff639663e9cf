# FacT-TK: the increments as one tensor (shared core, per-matrix factor);
# folds exactly. ReparamCheckpointHook writes the merged (stock) checkpoint.
_base_ = ['./vit-tiny_digits5-9_fact-tt.py']

model = dict(backbone=dict(mode='tk'))
