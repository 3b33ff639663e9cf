# LoRA rank 8 (alpha 8) on every qkv of the frozen Swin; FPN and head train
# with the recipe of full fine-tuning. Merged into a stock checkpoint at the
# end (tools/reparam.py does it for any checkpoint).
_base_ = ['./_base_/retinanet_swin-l-in22k_fpn_amp-1x_voc0712.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRABackbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook')
]
