# RepAdapter in front of every qkv and fc1 of the frozen Swin; merged into a
# stock mmseg checkpoint at the end (tools/reparam.py does it for any
# checkpoint). AdamW lr 3e-4 as for E3VA.
_base_ = ['./_base_/upernet_swin-l-in22k_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.RepAdapterBackbone',
        backbone={{_base_.model.backbone}}))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook')
]
