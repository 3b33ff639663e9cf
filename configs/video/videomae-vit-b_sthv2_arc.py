# ARC: one shared projection D (768 x 50) for the attention sites and one for
# the FFN sites; per site lambda and b. Only adapters and head train.
_base_ = ['./_base_/videomae-vit-b_sthv2.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.ARCBackbone',
        backbone=_base_.vit_b,
        hidden_dim=50))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
