# DoRA: LoRA's direction plus a trained magnitude per row of qkv; the
# quickstart's settings (configs/quickstart/) on the comparison's recipe (the
# same data, optimiser and schedule as every method) and search split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_dora.py',
    './search_split.py',
]
