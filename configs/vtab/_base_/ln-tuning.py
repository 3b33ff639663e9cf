# Baseline: LN-tuning, the weight and bias of every norm train. No VTAB-1k
# recipe of its own: the shared recipe; lr and wd from the suite's search
# (docs: reproducing). Nothing to fold: its checkpoint merges into a stock
# one.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LNTuningBackbone',
        backbone=_base_.backbone))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
