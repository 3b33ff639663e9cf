# AdaptFormer: a bottleneck branch parallel to every MLP of the frozen Swin
# (bottleneck 64, s = 0.1, the paper's); FPN and heads train with the recipe
# of full fine-tuning. It does not fold: deploy the adapter checkpoint with
# this config.
_base_ = [
    './_base_/cascade-mask-rcnn_swin-b-in22k_'
    'fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.AdaptFormerBackbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
