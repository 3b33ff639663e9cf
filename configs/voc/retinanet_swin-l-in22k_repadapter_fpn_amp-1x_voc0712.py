# RepAdapter in front of every qkv and fc1 of the frozen Swin; FPN and head
# train with the recipe of full fine-tuning; merged into a stock mmdet
# checkpoint at the end (tools/reparam.py does it for any checkpoint).
_base_ = ['./_base_/retinanet_swin-l-in22k_fpn_amp-1x_voc0712.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.RepAdapterBackbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook')
]
