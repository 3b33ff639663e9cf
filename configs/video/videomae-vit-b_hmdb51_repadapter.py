# RepAdapter in front of qkv (via the attention's input) and fc1 of every
# block; only adapters and head train. Writes the merged stock checkpoint
# and config at the end (ReparamCheckpointHook).
_base_ = ['./_base_/videomae-vit-b_hmdb51.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.RepAdapterBackbone',
        backbone=_base_.vit_b,
        hidden_dim=8,
        groups=2,
        scale=1.0))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
