# The CPU-sized comparison (`make compare`): the `make demo` ViT (4 layers,
# width 64, pre-trained on digits 0-4 by tools/train.py) adapted to small
# real tasks, every method with the same recipe (AdamW lr 5e-3, wd 1e-4,
# batch 32, 15 epochs, 3 warm-up epochs then cosine; random crop).
_base_ = ['../../quickstart/_base_/digits5-9_transfer.py', './search_split.py']

model = dict(backbone=_base_.pretrained_vit)
