# AdaptFormer: a bottleneck branch parallel to every MLP of the frozen Swin
# (bottleneck 64, s = 0.1, the paper's); UperNet and the auxiliary head
# train. AdamW lr 3e-4, as the other PETL configs here. It does not fold:
# deploy the adapter checkpoint with this config.
_base_ = ['./_base_/upernet_swin-l-in22k_8xb2-160k_ade20k-512x512.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.AdaptFormerBackbone',
        backbone={{_base_.model.backbone}}))
optim_wrapper = dict(optimizer=dict(lr=0.0003))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
