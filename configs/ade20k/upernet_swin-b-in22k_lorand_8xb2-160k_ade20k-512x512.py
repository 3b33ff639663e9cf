# LoRand (Yin et al., CVPR 2023): low-rank synthesised GELU adapters after
# the attention and the MLP of every block of the frozen Swin (2 branches,
# kernel 8, hidden d/2: 1.20M at Swin-B, 1.80M at Swin-L). It does not
# fold: deploy the adapter checkpoint with this config.
# AdamW lr 3e-4 as for the other PETL configs here.
_base_ = ['./_base_/upernet_swin-b-in22k_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRandBackbone',
        backbone={{_base_.model.backbone}}))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
