# Baseline: the pre-trained ViT frozen, only the head trains.
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.FrozenBackbone',
        backbone=_base_.pretrained_vit))
