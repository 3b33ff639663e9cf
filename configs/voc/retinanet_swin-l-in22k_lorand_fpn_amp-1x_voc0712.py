# LoRand (Yin et al., CVPR 2023): low-rank synthesised GELU adapters after
# the attention and the MLP of every block of the frozen Swin (2 branches,
# kernel 8, hidden d/2: 1.20M at Swin-B, 1.80M at Swin-L). It does not
# fold: deploy the adapter checkpoint with this config.
# FPN and head train with the recipe of full fine-tuning.
_base_ = ['./_base_/retinanet_swin-l-in22k_fpn_amp-1x_voc0712.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRandBackbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
