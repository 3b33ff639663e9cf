# Partial-1: the last block of the Swin's last stage fine-tunes (its stock
# weights; 12.60M at Swin-B, 28.34M at Swin-L window 7), the rest of the
# backbone is frozen. Merged into a stock checkpoint at the end (nothing to
# fold: the tuned block is stock).
# FPN and heads train with the recipe of full fine-tuning.
_base_ = [
    './_base_/cascade-mask-rcnn_swin-b-in22k_'
    'fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.Partial1Backbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook')
]
