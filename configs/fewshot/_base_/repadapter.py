# RepAdapter on the few-shot sets: hidden 8, 2 groups, dropout 0.1 and
# s = 1 (the reference's few-shot configs use 1 for all five sets).
_base_ = ['./fewshot.py']

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
