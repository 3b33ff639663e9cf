# VPT-deep on the few-shot sets (the "VPT" baseline of NOAH's and
# RepAdapter's few-shot tables): 10 prompt tokens per layer, with the
# few-shot recipe of fewshot.py.
_base_ = ['./fewshot.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.VPTBackbone',
        backbone=_base_.backbone,
        mode='deep',
        num_tokens=10))
