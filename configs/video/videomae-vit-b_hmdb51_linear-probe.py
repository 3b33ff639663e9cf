# Baseline: the pre-trained backbone frozen, only the head trains.
_base_ = ['./_base_/videomae-vit-b_hmdb51.py']

model = dict(
    backbone=dict(
        _delete_=True, type='mmpetl.FrozenBackbone', backbone=_base_.vit_b))
