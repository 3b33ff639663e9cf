# Frozen backbone (the memory floor of every PETL method): the Swin is pre-
# trained and frozen; UperNet and the auxiliary head train. AdamW lr 3e-4, as
# the other PETL configs here.
_base_ = ['./_base_/upernet_swin-l-in22k_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.FrozenBackbone',
        backbone={{_base_.model.backbone}}))
optim_wrapper = dict(optimizer=dict(lr=0.0003))
