# Adapter (Houlsby) on the few-shot sets (the "Adapter" baseline of NOAH's
# and RepAdapter's few-shot tables): bottleneck 8, s = 1, with the few-shot
# recipe of fewshot.py.
_base_ = ['./fewshot.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.HoulsbyAdapterBackbone',
        backbone=_base_.backbone,
        bottleneck=8,
        scale=1.0))
