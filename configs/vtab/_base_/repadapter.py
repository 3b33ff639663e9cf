# RepAdapter (Luo et al.): in front of qkv and fc1, hidden 8, 2 groups,
# dropout 0.1; the scale s is set per task (VTAB1K_TASKS). Shared recipe.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.RepAdapterBackbone',
        backbone=_base_.backbone,
        hidden_dim=8,
        groups=2,
        dropout=0.1,
        scale=1.0))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
