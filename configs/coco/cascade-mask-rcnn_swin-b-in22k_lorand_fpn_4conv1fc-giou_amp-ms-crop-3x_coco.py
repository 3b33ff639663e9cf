# LoRand (Yin et al., CVPR 2023): low-rank synthesised GELU adapters after
# the attention and the MLP of every block of the frozen Swin (2 branches,
# kernel 8, hidden d/2: 1.20M at Swin-B, 1.80M at Swin-L). It does not
# fold: deploy the adapter checkpoint with this config.
# FPN and heads train with the recipe of full fine-tuning.
_base_ = [
    './_base_/cascade-mask-rcnn_swin-b-in22k_'
    'fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRandBackbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
