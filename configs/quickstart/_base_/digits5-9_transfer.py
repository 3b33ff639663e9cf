# The downstream task: digits 5-9, from the ViT pre-trained on digits 0-4.
_base_ = ['./vit-tiny_digits.py']

data_root = 'data/quickstart/digits5-9'
pretrained_vit = dict(
    _base_.vit,
    init_cfg=dict(
        type='Pretrained', checkpoint=_base_.pretrained, prefix='backbone.'))

train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader

optim_wrapper = dict(
    optimizer=dict(type='AdamW', lr=5e-3, weight_decay=1e-4))
train_cfg = dict(max_epochs=15, val_interval=15)
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
