# ARC: shared projections (h=50 is larger than this ViT's width, so h=16).
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.ARCBackbone',
        backbone=_base_.pretrained_vit,
        hidden_dim=16))
