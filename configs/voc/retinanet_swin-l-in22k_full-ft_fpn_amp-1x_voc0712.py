_base_ = ['./_base_/retinanet_swin-l-in22k_fpn_amp-1x_voc0712.py']
