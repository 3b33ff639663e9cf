# VPT-deep: 10 learnable prompt tokens after the class token (new ones at
# every layer). Prompts are extra attention inputs: they do not fold, so no
# merged checkpoint is written; deploy the adapter checkpoint with this
# config.
_base_ = ['./vit-tiny_digits5-9_vpt-shallow.py']

model = dict(backbone=dict(mode='deep'))
