# FacT-TT: factorised weight increments of qkv, proj, fc1 and fc2;
# folds exactly.
# ReparamCheckpointHook writes the merged (stock) checkpoint at the end.
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.FacTBackbone',
        backbone=_base_.pretrained_vit,
        mode='tt',
        rank=8,
        scale=1.0))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
