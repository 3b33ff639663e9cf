# Baseline: Pfeiffer adapters, Houlsby's after the MLP only (bottleneck 8,
# s = 1, OSU-MLB/PETL_Vision's defaults). Does not fold.
_base_ = ['./houlsby.py']

model = dict(backbone=dict(type='mmpetl.PfeifferAdapterBackbone'))
