# Convpass (Jie & Deng): convolutional bypasses parallel to attention and
# MLP, r = 8, xavier-initialised convolution. Its VTAB-1k recipe
# (JieShibo/PETL-ViT convpass/vtab/train.py) is the shared one; the scale s
# is chosen per task there, here by the suite's search (docs:
# reproducing). Does not fold.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.ConvpassBackbone',
        backbone=_base_.backbone,
        dim=8,
        scale=1.0,
        conv_init='xavier'))
