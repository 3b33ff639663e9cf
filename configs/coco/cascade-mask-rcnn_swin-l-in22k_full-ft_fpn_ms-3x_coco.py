_base_ = ['./_base_/cascade-mask-rcnn_swin-l-in22k_fpn_ms-3x_coco.py']
