# FacT-TK: FacT-TT's recipe with the Tucker format; rank and scale chosen
# per task (JieShibo/PETL-ViT FacT/configs/tk/<task>.yaml, set in the
# per-task files); rank 32 here (the largest the reference uses).
_base_ = ['./fact-tt.py']

model = dict(backbone=dict(mode='tk', rank=32))
