# LoRA rank 8 (alpha 8) on every qkv of the frozen Swin; UperNet and the
# auxiliary head train. AdamW lr 3e-4, as the other PETL configs here. Merged
# into a stock checkpoint at the end (tools/reparam.py does it for any
# checkpoint).
_base_ = ['./_base_/upernet_swin-l-in22k_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRABackbone',
        backbone={{_base_.model.backbone}}))
optim_wrapper = dict(optimizer=dict(lr=0.0003))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook')
]
