# LoRA rank 8 (alpha 8) on every qkv of the frozen Swin; FPN and heads train
# with the recipe of full fine-tuning. Merged into a stock checkpoint at the
# end (tools/reparam.py does it for any checkpoint).
_base_ = [
    './_base_/cascade-mask-rcnn_swin-b-in22k_'
    'fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRABackbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook')
]
