# Baseline: AdaptFormer (Chen et al.), a bottleneck branch parallel to every
# MLP, bottleneck 8 and s = 0.1 (the VTAB-1k tables' 0.16M configuration),
# on the shared recipe. Does not fold.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.AdaptFormerBackbone',
        backbone=_base_.backbone,
        bottleneck=8,
        scale=0.1))
