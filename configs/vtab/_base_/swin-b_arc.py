# ARC on Swin-B ImageNet-22k, the reference's Swin recipe
# (DavidYanAnDe/ARC train_ARC_swin.py, Model/ARC_swin_b.py): ARC's ViT
# recipe with per-task lr and wd (set in the per-task files), adapter
# dropout 0.5 (its Swin blocks' default: the per-task "a_drop" it logs never
# reaches the model), timm Swin's drop-path 0.1, and timm's head init
# (trunc-normal std 0.02, zero bias; the Swin script does not zero the
# head). The FFN adapter sits after norm2, in front of fc1, where it folds;
# model.backbone.swin_ffn_placement='reference' puts it on the residual
# stream before norm2 as the reference does (not mergeable).
_base_ = ['./arc.py', './backbones/swin-b_in22k.py']

model = dict(
    backbone=dict(
        backbone=dict(_base_.swin_b.backbone, _delete_=True), dropout=0.5),
    neck=dict(_base_.swin_b.neck, _delete_=True),
    head=dict(
        in_channels=_base_.swin_b.feat_dims,
        init_cfg=dict(
            _delete_=True, type='TruncNormal', layer='Linear', std=0.02,
            bias=0.)))
