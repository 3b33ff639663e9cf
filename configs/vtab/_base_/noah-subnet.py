# NOAH (Zhang, Zhou, Liu 2022), stage 3: retraining one subnet (Adapter,
# LoRA and VPT with per-layer dimensions) from the pre-trained ViT, with the
# reference's retraining recipe: the shared VTAB-1k one (AdamW lr 1e-3,
# wd 1e-4, 100 epochs, 10 warm-up, batch 64, train800val200, test once),
# dropout 0.1 in each module, head trunc_normal(0.02) (timm's
# reset_classifier). A child sets model.backbone.arch, e.g.
# dict(prompt=[10, 5, ...], lora=[...], adapter=[...]) (one entry per layer;
# see configs/vtab/noah/vit-b16_noah-subnet_cifar.py); the suite writes one
# per task from its search (tools/suites/vtab.py --methods noah).
_base_ = ['./vtab1k.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.NOAHBackbone',
        backbone=_base_.backbone,
        # arch=dict(prompt=[...], lora=[...], adapter=[...]): the child's
        dropout=0.1,
        init='reference'),
    head=dict(init_cfg=dict(_delete_=True, type='TruncNormal',
                            layer='Linear', std=0.02, bias=0.)))
