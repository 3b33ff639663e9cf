# ARC: shared projections D per stage (attention and FFN sites apart), per
# site lambda and b. Only adapters and head train.
_base_ = ['./_base_/swin-b_k400_petl.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.ARCBackbone',
        backbone=_base_.swin_b,
        hidden_dim=50))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
