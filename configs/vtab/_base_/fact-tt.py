# FacT-TT (Jie & Deng): factorised increments of every linear of the
# blocks. Its VTAB-1k recipe (JieShibo/PETL-ViT FacT/vtab.py) is the shared
# one (AdamW lr 1e-3, wd 1e-4, batch 64, 100 epochs, 10 warm-up epochs,
# cosine); rank and scale are chosen per task (FacT/configs/tt/<task>.yaml,
# set in the per-task files); the values here are the reference's
# defaults. Folds exactly.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.FacTBackbone',
        backbone=_base_.backbone,
        mode='tt',
        rank=8,
        scale=1.0,
        dropout=0.1))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
