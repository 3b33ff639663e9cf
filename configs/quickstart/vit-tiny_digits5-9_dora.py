# DoRA: LoRA's direction plus a trained magnitude per output row of qkv;
# folds exactly.
# ReparamCheckpointHook writes the merged (stock) checkpoint at the end.
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.LoRABackbone',
        backbone=_base_.pretrained_vit,
        rank=8,
        alpha=8,
        dora=True))
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.ReparamCheckpointHook'),
]
