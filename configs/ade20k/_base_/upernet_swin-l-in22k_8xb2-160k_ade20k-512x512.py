# UperNet Swin-L (ImageNet-22k) on ADE20K 512x512, 160k iterations,
# batch 16 (8 GPUs x 2): mmseg's config with the official checkpoint
# converted by mmseg's tools/model_converters/swin2mmseg.py (see README).
_base_ = [
    'mmseg::swin/swin-large-patch4-window7-in22k-pre'
    '_upernet_8xb2-160k_ade20k-512x512.py'
]
checkpoint_file = 'pretrain/swin_large_patch4_window7_224_22k_mmseg.pth'
model = dict(
    backbone=dict(
        init_cfg=dict(type='Pretrained', checkpoint=checkpoint_file)))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
