# Baseline: Houlsby adapters after the attention and the MLP of every block,
# bottleneck 8, s = 1 (OSU-MLB/PETL_Vision's defaults), on the shared
# recipe; s from the suite's search (docs: reproducing). Does not fold.
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.HoulsbyAdapterBackbone',
        backbone=_base_.backbone,
        bottleneck=8,
        scale=1.0))
