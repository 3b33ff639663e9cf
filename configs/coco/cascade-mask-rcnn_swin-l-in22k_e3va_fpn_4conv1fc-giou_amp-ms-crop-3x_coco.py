# E3VA: the frozen Swin runs without autograd; the highway, FPN and heads
# train, with the recipe of full fine-tuning. memory: what the highway keeps
# for its backward ('keep', 'autocast' or 'recompute', or one per stage,
# e.g. ('recompute', 'recompute', 'keep', 'keep'); README "Dense prediction").
_base_ = [
    './_base_/cascade-mask-rcnn_swin-l-in22k_'
    'fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.E3VABackbone',
        memory='keep',
        backbone={{_base_.model.backbone}}))
