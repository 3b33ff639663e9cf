# ARC with hidden 16 (the demo's choice for this width-64 ViT) and its
# zero-initialised head.
_base_ = ['./transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.ARCBackbone',
        backbone=_base_.pretrained_vit,
        hidden_dim=16),
    head=dict(init_cfg=dict(type='Constant', layer='Linear', val=0.)))
