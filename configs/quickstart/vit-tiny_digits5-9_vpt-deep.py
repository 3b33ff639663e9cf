# VPT-deep: 10 learnable prompt tokens after the class token (new ones at
# every layer). Prompts are extra attention inputs: they do not fold, so no
# merged checkpoint is written; deploy the adapter checkpoint with this
# config.
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.VPTBackbone',
        backbone=_base_.pretrained_vit,
        mode='deep',
        num_tokens=10))
