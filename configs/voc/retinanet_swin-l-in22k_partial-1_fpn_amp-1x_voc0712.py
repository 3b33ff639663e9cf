# Partial-1: the last block of the Swin's last stage fine-tunes (its stock
# weights; 12.60M at Swin-B, 28.34M at Swin-L window 7), the rest of the
# backbone is frozen. Merged into a stock checkpoint at the end (nothing to
# fold: the tuned block is stock).
# FPN and head train with the recipe of full fine-tuning.
_base_ = ['./_base_/retinanet_swin-l-in22k_fpn_amp-1x_voc0712.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.Partial1Backbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook')
]
