# RepAdapter, attention-only ("repattn" in the reference code): adapters in
# front of qkv only, with their own per-task scales
# (mmpetl.datasets.vtab1k.VTAB1K_REPATTN_SCALES). RepAdapter's recipe.
_base_ = ['./repadapter.py']

model = dict(backbone=dict(sites=('attn', )))
