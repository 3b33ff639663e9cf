# Baseline: VPT-shallow (Jia et al.), N prompt tokens at the input. The
# paper picks N and the learning rate per task; here N = 10 and both come
# from the suite's search (docs: reproducing). Shared recipe. Does not fold.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.VPTBackbone',
        backbone=_base_.backbone,
        mode='shallow',
        num_tokens=10))
