# Copyright (c) mmpetl contributors. All rights reserved.
"""Tiny ADE20K- and COCO-layout datasets from real photos, and tiny versions
of the shipped dense-prediction configs.

The photos ship with scikit-image and scikit-learn. Labels are derived from
the images: pixels are split into three classes by grey-level tercile
(dark / mid / bright), and every connected component of a class (big enough)
is a COCO instance with its box and polygon.
"""
import json
import os
import os.path as osp

import cv2
import numpy as np
from mmengine.config import ConfigDict

CLASSES = ('dark', 'mid', 'bright')
TRAIN_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
VAL_PHOTOS = ('china.jpg', 'flower.jpg')


def _photos(size):
    from skimage import data
    from sklearn.datasets import load_sample_images
    samples = load_sample_images()
    photos = {name: getattr(data, name)() for name in TRAIN_PHOTOS}
    photos.update(zip(samples.filenames, samples.images))
    photos = {osp.basename(k).split('.')[0]: v for k, v in photos.items()}
    return {
        name: cv2.resize(rgb, size[::-1], interpolation=cv2.INTER_AREA)
        for name, rgb in photos.items()
    }


def class_map(rgb):
    """0, 1, 2 by grey-level tercile of the image."""
    grey = rgb.astype(np.float64).mean(axis=2)
    low, high = np.quantile(grey, [1 / 3, 2 / 3])
    return (grey > low).astype(np.uint8) + (grey > high).astype(np.uint8)


def _splits():
    return dict(training=TRAIN_PHOTOS,
                validation=tuple(p.split('.')[0] for p in VAL_PHOTOS))


def write_ade20k(root, size=(64, 64)):
    """ADE20K layout: images/{training,validation}/*.jpg and
    annotations/.../*.png with 0 = other (ignored by reduce_zero_label) and
    class c stored as c + 1."""
    photos = _photos(size)
    for split, names in _splits().items():
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for name in names:
            rgb = photos[name]
            cv2.imwrite(osp.join(root, 'images', split, f'{name}.jpg'),
                        rgb[..., ::-1])
            cv2.imwrite(osp.join(root, 'annotations', split, f'{name}.png'),
                        class_map(rgb) + 1)
    return root


def _instances(labels, min_area):
    for category, _ in enumerate(CLASSES):
        count, components = cv2.connectedComponents(
            (labels == category).astype(np.uint8), connectivity=8)
        for index in range(1, count):
            mask = (components == index).astype(np.uint8)
            if mask.sum() < min_area:
                continue
            contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL,
                                           cv2.CHAIN_APPROX_SIMPLE)
            polygons = [c.reshape(-1).astype(float).tolist()
                        for c in contours if len(c) >= 3]
            if not polygons:
                continue
            ys, xs = np.nonzero(mask)
            x0, y0 = int(xs.min()), int(ys.min())
            box = [x0, y0, int(xs.max()) + 1 - x0, int(ys.max()) + 1 - y0]
            yield category, box, polygons, int(mask.sum())


def write_coco(root, size=(64, 64), min_area=24):
    """COCO layout: {train,val}/*.jpg and annotations/instances_{train,
    val}.json, one instance per connected component of each class."""
    photos = _photos(size)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_id = 0
    for split, names in zip(('train', 'val'), _splits().values()):
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for image_id, name in enumerate(names):
            rgb = photos[name]
            cv2.imwrite(osp.join(root, split, f'{name}.jpg'), rgb[..., ::-1])
            images.append(dict(id=image_id, file_name=f'{name}.jpg',
                               height=size[0], width=size[1]))
            for category, box, polygons, area in _instances(
                    class_map(rgb), min_area):
                ann_id += 1
                annotations.append(dict(
                    id=ann_id, image_id=image_id, category_id=category + 1,
                    bbox=box, area=area, segmentation=polygons, iscrowd=0))
        with open(osp.join(root, 'annotations',
                           f'instances_{split}.json'), 'w') as f:
            json.dump(dict(images=images, annotations=annotations,
                           categories=[dict(id=i + 1, name=n)
                                       for i, n in enumerate(CLASSES)]), f)
    return root


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


def tiny_cascade_config(cfg, data_root, swin, epochs=2):
    """``cfg`` (a shipped COCO config) at 64x64 with a tiny Swin and narrow
    heads; changed in place."""
    _set_backbone(cfg, dict(swin, convert_weights=False))
    width, size = 16, (64, 64)
    model = cfg.model
    model.neck.update(in_channels=[16, 32], out_channels=width)
    model.rpn_head.update(in_channels=width, feat_channels=width)
    model.roi_head.bbox_roi_extractor.out_channels = width
    for head in model.roi_head.bbox_head:
        head.update(in_channels=width, fc_out_channels=32,
                    num_classes=len(CLASSES))
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
    train_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='Resize', scale=size, keep_ratio=True),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PackDetInputs')
    ]
    test_pipeline = [
        dict(type='LoadImageFromFile'),
        dict(type='Resize', scale=size, keep_ratio=True),
        dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
        dict(type='PackDetInputs',
             meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape',
                        'scale_factor'))
    ]
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
    cfg.train_cfg.update(max_epochs=epochs, val_interval=epochs)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = epochs
    cfg.default_hooks.logger.interval = 1
    return cfg
