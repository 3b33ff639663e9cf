# Convpass: convolutional bypasses (1x1 down, 3x3 conv on the patch grid,
# 1x1 up, QuickGELU) parallel to the attention and the MLP of every layer.
# Non-linear: it does not fold, so no merged checkpoint is written; deploy
# the adapter checkpoint with this config. Bottleneck 4 for this 64-wide
# ViT (8 in the paper's ViT-B).
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.ConvpassBackbone',
        backbone=_base_.pretrained_vit,
        dim=4))
