# SSF: a scale and shift after the patch embedding, every norm and every
# linear of a block; folds exactly into them.
# ReparamCheckpointHook writes the merged (stock) checkpoint at the end.
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.SSFBackbone',
        backbone=_base_.pretrained_vit))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
