# RepAdapter, paper defaults (hidden 8, 2 groups), s = 1.
_base_ = ['./transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.RepAdapterBackbone',
        backbone=_base_.pretrained_vit,
        scale=1.0))
