# E3VA: the frozen Swin runs without autograd; the highway, FPN and heads
# train, with the same recipe as full fine-tuning.
_base_ = ['./_base_/cascade-mask-rcnn_swin-b-in22k_fpn_ms-3x_coco.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.E3VABackbone',
        backbone={{_base_.model.backbone}}))
