# FacT-TK: the increments as one tensor (shared core, per-matrix factor);
# folds exactly.
# ReparamCheckpointHook writes the merged (stock) checkpoint at the end.
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.FacTBackbone',
        backbone=_base_.pretrained_vit,
        mode='tk',
        rank=8,
        scale=1.0))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
