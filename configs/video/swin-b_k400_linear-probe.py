# Baseline: the pre-trained backbone frozen, only the head trains.
_base_ = ['./_base_/swin-b_k400_petl.py']

model = dict(
    backbone=dict(
        _delete_=True, type='mmpetl.FrozenBackbone', backbone=_base_.swin_b))
