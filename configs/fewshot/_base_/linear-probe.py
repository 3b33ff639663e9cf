# Baseline: the pre-trained backbone frozen; only the head trains.
_base_ = ['./fewshot.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.FrozenBackbone',
        backbone=_base_.backbone))
