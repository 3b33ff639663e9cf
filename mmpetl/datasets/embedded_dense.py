# Copyright (c) mmpetl contributors. All rights reserved.
"""Tiny dense-prediction datasets from real photos that ship inside
registry packages (scikit-image, scikit-learn), in the ADE20K, COCO and
Pascal VOC layouts. Used by the tests: nothing is downloaded.

Labels are derived from the images: pixels are split into three classes by
grey-level tercile (dark / mid / bright), and every connected component of
a class (big enough) is an instance with its box (and, for COCO, polygon).
"""
import json
import os
import os.path as osp
from typing import Dict, Iterator, List, Sequence, Tuple
from xml.etree import ElementTree

import cv2
import numpy as np

#: The three classes: grey-level terciles of each photo.
CLASSES = ('dark', 'mid', 'bright')
TRAIN_PHOTOS = ('astronaut', 'coffee', 'chelsea', 'rocket')
VAL_PHOTOS = ('china', 'flower')


def _photos(size: Tuple[int, int]) -> Dict[str, np.ndarray]:
    """The photos, RGB ``(H, W, 3)`` uint8 resized to ``size`` (H, W)."""
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


def class_map(rgb: np.ndarray) -> np.ndarray:
    """0, 1, 2 by grey-level tercile of the image."""
    grey = rgb.astype(np.float64).mean(axis=2)
    low, high = np.quantile(grey, [1 / 3, 2 / 3])
    return (grey > low).astype(np.uint8) + (grey > high).astype(np.uint8)


def _splits() -> Dict[str, Sequence[str]]:
    return dict(train=TRAIN_PHOTOS, val=VAL_PHOTOS)


def instances(labels: np.ndarray, min_area: int
              ) -> Iterator[Tuple[int, List[int], List[list], int]]:
    """``(class, [x, y, w, h], polygons, area)`` of each connected component
    of each class of ``labels`` with at least ``min_area`` pixels."""
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


def write_ade20k(root: str, size: Tuple[int, int] = (64, 64)) -> str:
    """ADE20K layout: images/{training,validation}/*.jpg and
    annotations/.../*.png with 0 = other (ignored by reduce_zero_label) and
    class c stored as c + 1. Returns ``root``."""
    photos = _photos(size)
    for split, names in zip(('training', 'validation'), _splits().values()):
        os.makedirs(osp.join(root, 'images', split), exist_ok=True)
        os.makedirs(osp.join(root, 'annotations', split), exist_ok=True)
        for name in names:
            rgb = photos[name]
            cv2.imwrite(osp.join(root, 'images', split, f'{name}.jpg'),
                        rgb[..., ::-1])
            cv2.imwrite(osp.join(root, 'annotations', split, f'{name}.png'),
                        class_map(rgb) + 1)
    return root


def write_coco(root: str, size: Tuple[int, int] = (64, 64),
               min_area: int = 24) -> str:
    """COCO layout: ``{train,val}/*.jpg`` and
    ``annotations/instances_{train,val}.json``, one instance per connected component of each class.
    Returns ``root``."""
    photos = _photos(size)
    os.makedirs(osp.join(root, 'annotations'), exist_ok=True)
    ann_id = 0
    for split, names in _splits().items():
        os.makedirs(osp.join(root, split), exist_ok=True)
        images, annotations = [], []
        for image_id, name in enumerate(names):
            rgb = photos[name]
            cv2.imwrite(osp.join(root, split, f'{name}.jpg'), rgb[..., ::-1])
            images.append(dict(id=image_id, file_name=f'{name}.jpg',
                               height=size[0], width=size[1]))
            for category, box, polygons, area in instances(
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


def _voc_annotation(name: str, size: Tuple[int, int],
                    objects: List[Tuple[int, List[int]]]) -> ElementTree:
    """A VOC XML annotation; boxes ``[x, y, w, h]`` (0-based pixels) are
    written 1-based and inclusive, as in VOC."""
    root = ElementTree.Element('annotation')
    ElementTree.SubElement(root, 'filename').text = f'{name}.jpg'
    size_node = ElementTree.SubElement(root, 'size')
    for key, value in zip(('width', 'height', 'depth'),
                          (size[1], size[0], 3)):
        ElementTree.SubElement(size_node, key).text = str(value)
    for category, (x, y, w, h) in objects:
        node = ElementTree.SubElement(root, 'object')
        ElementTree.SubElement(node, 'name').text = CLASSES[category]
        ElementTree.SubElement(node, 'difficult').text = '0'
        box = ElementTree.SubElement(node, 'bndbox')
        for key, value in zip(('xmin', 'ymin', 'xmax', 'ymax'),
                              (x + 1, y + 1, x + w, y + h)):
            ElementTree.SubElement(box, key).text = str(value)
    return ElementTree.ElementTree(root)


def write_voc(root: str, size: Tuple[int, int] = (64, 64),
              min_area: int = 24, year: str = '2007') -> str:
    """Pascal VOC layout under ``{root}/VOC{year}/``: JPEGImages/*.jpg,
    Annotations/*.xml (one object per connected component of each class,
    named after :data:`CLASSES`) and ImageSets/Main/{trainval,test}.txt.
    Returns ``root`` (mmdet's ``VOCDataset`` ``data_root``)."""
    photos = _photos(size)
    folder = osp.join(root, f'VOC{year}')
    for sub in ('JPEGImages', 'Annotations', osp.join('ImageSets', 'Main')):
        os.makedirs(osp.join(folder, sub), exist_ok=True)
    for split, names in zip(('trainval', 'test'), _splits().values()):
        for name in names:
            rgb = photos[name]
            cv2.imwrite(osp.join(folder, 'JPEGImages', f'{name}.jpg'),
                        rgb[..., ::-1])
            objects = [(category, box) for category, box, _, _ in
                       instances(class_map(rgb), min_area)]
            _voc_annotation(name, size, objects).write(
                osp.join(folder, 'Annotations', f'{name}.xml'))
        with open(osp.join(folder, 'ImageSets', 'Main', f'{split}.txt'),
                  'w') as f:
            f.writelines(f'{name}\n' for name in names)
    return root
