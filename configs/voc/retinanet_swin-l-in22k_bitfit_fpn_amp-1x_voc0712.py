# BitFit: every bias of the frozen Swin trains; FPN and head train with the
# recipe of full fine-tuning. Merged into a stock checkpoint at the end
# (tools/reparam.py does it for any checkpoint).
_base_ = ['./_base_/retinanet_swin-l-in22k_fpn_amp-1x_voc0712.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.BitFitBackbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook')
]
