# Frozen backbone (the memory floor of every PETL method): the Swin is
# pre-trained and frozen, FPN and head train.
_base_ = ['./_base_/retinanet_swin-l-in22k_fpn_amp-1x_voc0712.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.FrozenBackbone',
        backbone={{_base_.model.backbone}}))
