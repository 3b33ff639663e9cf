# Mona after the attention and the MLP of every block of the frozen Swin
# (Leiyi-Hu/mona's placement); FPN and heads train with the recipe of full
# fine-tuning. It does not fold: no merged checkpoint; deploy the adapter
# checkpoint with this config.
_base_ = [
    './_base_/cascade-mask-rcnn_swin-b-in22k_'
    'fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.MonaBackbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
