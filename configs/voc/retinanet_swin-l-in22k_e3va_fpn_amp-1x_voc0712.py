# E3VA: the frozen Swin runs without autograd; the highway (stages 0-3; its
# output norms at stages 1-3), FPN and head train, with the recipe of full
# fine-tuning. memory: what the highway keeps for its backward ('keep',
# 'autocast' or 'recompute', or one per stage; README "Dense prediction").
_base_ = ['./_base_/retinanet_swin-l-in22k_fpn_amp-1x_voc0712.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.E3VABackbone',
        memory='keep',
        backbone={{_base_.model.backbone}}))
