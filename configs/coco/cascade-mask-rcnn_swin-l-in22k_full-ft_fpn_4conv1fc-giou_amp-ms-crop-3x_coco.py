_base_ = [
    './_base_/cascade-mask-rcnn_swin-l-in22k_'
    'fpn_4conv1fc-giou_amp-ms-crop-3x_coco.py'
]
