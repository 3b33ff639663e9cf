# Baseline: VPT-deep, N new prompt tokens at every layer; VPT-shallow's
# settings otherwise.
_base_ = ['./vpt-shallow.py']

model = dict(backbone=dict(mode='deep'))
