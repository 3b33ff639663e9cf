# The PETL recipe on Video Swin-B / Kinetics-400: the backbone is frozen, so
# mmaction2's Swin parameter groups (backbone lr x 0.1) go; AdamW lr 1e-3,
# wd 1e-4, as the ViT video configs (assumption, see README).
_base_ = ['./swin-b_k400.py']

optim_wrapper = dict(
    _delete_=True,
    type='AmpOptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-3, betas=(0.9, 0.999),
                   weight_decay=1e-4),
    clip_grad=dict(max_norm=5.0))
