# RepAdapter in front of qkv and fc1 of every Video Swin block; only adapters
# and head train. Writes the merged stock checkpoint and config at the end.
_base_ = ['./_base_/swin-b_k400_petl.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.RepAdapterBackbone',
        backbone=_base_.swin_b,
        hidden_dim=8,
        groups=2,
        scale=1.0))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
