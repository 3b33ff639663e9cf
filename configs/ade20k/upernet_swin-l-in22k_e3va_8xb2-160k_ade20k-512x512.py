# E3VA: the frozen Swin runs without autograd; the highway, UperNet and the
# auxiliary head train. AdamW lr 3e-4 (E3VA's protocol, METHODS.md).
# memory: what the highway keeps for its backward ('keep', 'autocast' or
# 'recompute', or one per stage; README "Dense prediction").
_base_ = ['./_base_/upernet_swin-l-in22k_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.E3VABackbone',
        memory='keep',
        backbone={{_base_.model.backbone}}))
optim_wrapper = dict(optimizer=dict(lr=3e-4))
