# LoRA on the few-shot sets (a baseline of NOAH's and RepAdapter's few-shot
# tables): rank 8, alpha 8 on the fused qkv, dropout 0.1, with the few-shot
# recipe of fewshot.py.
_base_ = ['./fewshot.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRABackbone',
        backbone=_base_.backbone,
        rank=8,
        alpha=8,
        dropout=0.1))
