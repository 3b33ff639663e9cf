# RepAdapter in front of qkv and fc1 of every layer; the head trains too.
# ReparamCheckpointHook also writes the merged (stock) checkpoint at the end.
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.RepAdapterBackbone',
        backbone=_base_.pretrained_vit,
        hidden_dim=8,
        groups=2,
        scale=1.0))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
