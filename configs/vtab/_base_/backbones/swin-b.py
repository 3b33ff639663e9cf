# Swin-B ImageNet-22k (swin-b_in22k.py) as a backbone base for
# tools/suites/vtab.py --backbone.
_base_ = ['./swin-b_in22k.py']
backbone = _base_.swin_b.backbone
neck = _base_.swin_b.neck
feat_dims = _base_.swin_b.feat_dims
