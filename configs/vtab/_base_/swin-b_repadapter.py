# RepAdapter on Swin-B ImageNet-22k: the ViT-B/16 recipe (the reference
# code trains Swin with the same train.py, per-task scales and schedule).
_base_ = ['./repadapter.py', './backbones/swin-b_in22k.py']

model = dict(
    backbone=dict(backbone=dict(_base_.swin_b.backbone, _delete_=True)),
    neck=dict(_base_.swin_b.neck, _delete_=True),
    head=dict(in_channels=_base_.swin_b.feat_dims))
