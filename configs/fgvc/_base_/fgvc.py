# FGVC data: VPT's splits of the five sets (mmpetl.FGVC), with the
# augmentation of VPT and ARC (DavidYanAnDe/ARC Data_process/tranforms.py):
# train: shorter side to 256 (PIL bilinear), random 224 crop, horizontal
# flip; test: shorter side to 256, center 224 crop. Train on `train`, report
# `test` after the last epoch. A per-set config inherits a VTAB-1k method
# base (its model and optimisation) and this file, and replaces the
# datasets with these (`_delete_`), naming the set.
fgvc_root = 'data/fgvc'
fgvc_train = dict(
    type='mmpetl.FGVC',
    name=None,
    data_root=fgvc_root,
    split='train',
    pipeline=[
        dict(type='LoadImageFromFile', imdecode_backend='pillow'),
        dict(type='ResizeEdge', scale=256, edge='short', backend='pillow',
             interpolation='bilinear'),
        dict(type='RandomCrop', crop_size=224),
        dict(type='RandomFlip', prob=0.5, direction='horizontal'),
        dict(type='PackInputs'),
    ])
fgvc_test = dict(
    fgvc_train,
    split='test',
    pipeline=[
        *fgvc_train['pipeline'][:2],  # load, shorter side to 256
        dict(type='CenterCrop', crop_size=224),
        dict(type='PackInputs'),
    ])
