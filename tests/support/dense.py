# Copyright (c) mmpetl contributors. All rights reserved.
"""Tiny versions of the shipped dense-prediction configs, for the tiny
ADE20K / COCO / VOC datasets of :mod:`mmpetl.datasets.embedded_dense`."""
import os.path as osp

from mmengine.config import ConfigDict

from mmpetl.datasets.embedded_dense import (CLASSES, write_ade20k,  # noqa
                                            write_coco, write_voc)
from tests.support.helpers import TINY_DET_SWIN
from tests.support.tools import ROOT

#: The shipped config of each dense task, ``{}`` standing for the method.
SHIPPED_CONFIGS = dict(
    seg='configs/ade20k/upernet_swin-b-in22k_{}_8xb2-160k_ade20k-512x512.py',
    det='configs/coco/cascade-mask-rcnn_swin-b-in22k_{}_fpn_'
    '4conv1fc-giou_amp-ms-crop-3x_coco.py',
    voc='configs/voc/retinanet_swin-l-in22k_{}_fpn_amp-1x_voc0712.py')

#: A three-stage tiny Swin whose stages 1-2 feed the FPN, as stages 1-3 of
#: the VOC recipe's Swin-L do.
TINY_VOC_SWIN = dict(TINY_DET_SWIN, depths=(2, 2, 2), num_heads=(2, 2, 2),
                     strides=(4, 2, 2), out_indices=(1, 2))


def _set_backbone(cfg, swin):
    """Put the tiny Swin where the stock one is (inside a wrapper or not)."""
    node = cfg.model
    while 'backbone' in node.backbone:
        node = node.backbone
    node.backbone = ConfigDict(swin)


def _loader(cfg_loader, dataset, batch_size):
    cfg_loader.update(batch_size=batch_size, num_workers=0,
                      persistent_workers=False)
    cfg_loader.dataset = dataset


def tiny_upernet_config(cfg, data_root, swin, work_iters=4):
    """``cfg`` (a shipped ADE20K config) at 64x64 with a tiny Swin and
    UperNet; changed in place."""
    _set_backbone(cfg, swin)
    size = (64, 64)
    cfg.model.data_preprocessor.size = size
    cfg.model.decode_head.update(in_channels=[16, 32], in_index=[0, 1],
                                 channels=16, pool_scales=(1, 2))
    cfg.model.auxiliary_head.update(in_channels=32, in_index=1, channels=16)
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackSegInputs')
    ]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', reduce_zero_label=True),
        dict(type='PackSegInputs')
    ]
    dataset = dict(type='ADE20KDataset', data_root=str(data_root),
                   reduce_zero_label=True)
    _loader(cfg.train_dataloader, dict(
        dataset, data_prefix=dict(img_path='images/training',
                                  seg_map_path='annotations/training'),
        pipeline=train_pipeline), 2)
    for loader in ('val_dataloader', 'test_dataloader'):
        _loader(cfg[loader], dict(
            dataset, data_prefix=dict(img_path='images/validation',
                                      seg_map_path='annotations/validation'),
            pipeline=test_pipeline), 1)
    cfg.train_cfg.update(max_iters=work_iters, val_interval=work_iters)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = work_iters
    cfg.default_hooks.logger.interval = 1
    return cfg


def _det_pipelines(size, with_mask):
    load = dict(type='LoadAnnotations', with_bbox=True, with_mask=with_mask)
    train = [
        dict(type='LoadImageFromFile'), load,
        dict(type='Resize', scale=size, keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs')
    ]
    test = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=size, keep_ratio=True), load,
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                        'scale_factor'))
    ]
    return train, test


def _epochs_on_cpu(cfg, epochs):
    """A few epochs, no schedule; the recipes' AmpOptimWrapper (mmengine
    runs it on GPUs only) as a plain OptimWrapper on the CPU."""
    cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = epochs
    cfg.default_hooks.logger.interval = 1
    if cfg.optim_wrapper.type == 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'OptimWrapper'
    return cfg


def tiny_cascade_config(cfg, data_root, swin, epochs=2):
    """``cfg`` (a shipped COCO config) at 64x64 with a tiny Swin and narrow
    heads (the recipe's 4conv1fc SyncBN heads, GIoU loss); changed in
    place."""
    _set_backbone(cfg, dict(swin, convert_weights=False))
    width, size = 16, (64, 64)
    model = cfg.model
    model.neck.update(in_channels=[16, 32], out_channels=width)
    model.rpn_head.update(in_channels=width, feat_channels=width)
    model.roi_head.bbox_roi_extractor.out_channels = width
    for head in model.roi_head.bbox_head:
        head.update(in_channels=width, fc_out_channels=32,
                    num_classes=len(CLASSES))
        if 'conv_out_channels' in head:
            head.conv_out_channels = width
    model.roi_head.mask_roi_extractor.out_channels = width
    model.roi_head.mask_head.update(in_channels=width,
                                    conv_out_channels=width,
                                    num_classes=len(CLASSES))
    # Fewer proposals and samples: CPU time, not accuracy, matters here.
    model.train_cfg.rpn_proposal.update(nms_pre=200, max_per_img=100)
    for stage in model.train_cfg.rcnn:
        stage.sampler.num = 64
    model.test_cfg.rpn.update(nms_pre=200, max_per_img=50)
    model.test_cfg.rcnn.max_per_img = 20
    train_pipeline, test_pipeline = _det_pipelines(size, with_mask=True)
    dataset = dict(type='CocoDataset', data_root=str(data_root),
                   metainfo=dict(classes=CLASSES))
    _loader(cfg.train_dataloader, dict(
        dataset, ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), pipeline=train_pipeline,
        filter_cfg=dict(filter_empty_gt=True)), 2)
    for loader in ('val_dataloader', 'test_dataloader'):
        _loader(cfg[loader], dict(
            dataset, ann_file='annotations/instances_val.json',
            data_prefix=dict(img='val/'), pipeline=test_pipeline,
            test_mode=True), 1)
    for evaluator in ('val_evaluator', 'test_evaluator'):
        cfg[evaluator].ann_file = osp.join(
            str(data_root), 'annotations', 'instances_val.json')
    return _epochs_on_cpu(cfg, epochs)


def tiny_retinanet_config(cfg, data_root, swin, epochs=2):
    """``cfg`` (a shipped VOC config) at 64x64 with a tiny Swin whose
    later stages feed the FPN (``swin['out_indices']``, e.g. ``(1, 2)``, as
    the recipe's ``(1, 2, 3)``) and a narrow head; changed in place."""
    _set_backbone(cfg, dict(swin, convert_weights=False))
    width, size = 16, (64, 64)
    dims = [swin['embed_dims'] * 2**i for i in swin['out_indices']]
    cfg.model.neck.update(in_channels=dims, out_channels=width)
    cfg.model.bbox_head.update(in_channels=width, feat_channels=width,
                               stacked_convs=1, num_classes=len(CLASSES))
    cfg.model.test_cfg.update(nms_pre=200, max_per_img=20)
    train_pipeline, test_pipeline = _det_pipelines(size, with_mask=False)
    dataset = dict(type='VOCDataset', data_root=str(data_root),
                   data_prefix=dict(sub_data_root='VOC2007/'),
                   metainfo=dict(classes=CLASSES))
    _loader(cfg.train_dataloader, dict(
        dataset, ann_file='VOC2007/ImageSets/Main/trainval.txt',
        pipeline=train_pipeline, filter_cfg=dict(filter_empty_gt=True)), 2)
    for loader in ('val_dataloader', 'test_dataloader'):
        _loader(cfg[loader], dict(
            dataset, ann_file='VOC2007/ImageSets/Main/test.txt',
            pipeline=test_pipeline, test_mode=True), 1)
    return _epochs_on_cpu(cfg, epochs)


def shipped_config(task: str, method: str) -> str:
    """The absolute path of the shipped ``task`` config of ``method``."""
    return osp.join(ROOT, SHIPPED_CONFIGS[task].format(method))
