# Frozen backbone (the memory floor of every PETL method): the Swin is
# pre-trained and frozen, FPN and heads train.
_base_ = [
    './_base_/cascade-mask-rcnn_swin-b-in22k_'
    'fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.FrozenBackbone',
        backbone={{_base_.model.backbone}}))
