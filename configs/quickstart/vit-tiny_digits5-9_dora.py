# DoRA: LoRA's direction plus a trained magnitude per output row of qkv;
# folds exactly. ReparamCheckpointHook writes the merged (stock) checkpoint.
_base_ = ['./vit-tiny_digits5-9_lora.py']

model = dict(backbone=dict(dora=True))
