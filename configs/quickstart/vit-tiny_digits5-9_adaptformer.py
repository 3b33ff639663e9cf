# AdaptFormer: a bottleneck branch (ReLU, s = 0.1) parallel to the MLP of
# every layer. Non-linear: it does not fold, so no merged checkpoint is
# written; deploy the adapter checkpoint with this config.
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.AdaptFormerBackbone',
        backbone=_base_.pretrained_vit,
        bottleneck=8))
