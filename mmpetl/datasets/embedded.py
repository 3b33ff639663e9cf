# Copyright (c) mmpetl contributors. All rights reserved.
"""Real images that ship inside registry packages, written out in
mmpretrain's ``CustomDataset`` annotation layout (``path label`` lines).

Used by the quick-start demo and the tests: nothing is downloaded.
"""
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

#: Marks a folder whose writer finished: it is kept as it is.
COMPLETE_MARK = '.complete'


def complete_split_counts(root: str,
                          splits: Sequence[str] = ('train', 'test')
                          ) -> Optional[Dict[str, int]]:
    """Lines per split list of a finished ``root``; None if unfinished."""
    if not osp.exists(osp.join(root, COMPLETE_MARK)):
        return None
    counts = {}
    for split in splits:
        with open(osp.join(root, f'{split}.txt')) as f:
            counts[split] = sum(1 for _ in f)
    return counts


def write_split_lists(root: str, lines: Dict[str, List[str]],
                      mark_complete: bool = False) -> Dict[str, int]:
    """Write ``{root}/{split}.txt`` per split; returns lines per split."""
    for split, split_lines in lines.items():
        with open(osp.join(root, f'{split}.txt'), 'w') as f:
            f.writelines(split_lines)
    if mark_complete:
        open(osp.join(root, COMPLETE_MARK), 'w').close()
    return {split: len(split_lines) for split, split_lines in lines.items()}


def write_digits_task(root: str,
                      digits: Sequence[int],
                      train_fraction: float = 0.5,
                      size: int = 32,
                      seed: int = 0) -> Dict[str, int]:
    """Write scikit-learn's handwritten digits of the given classes.

    The 8x8 images (1,797 real scans, 16 grey levels) are upscaled to
    ``size`` x ``size`` PNGs under ``{root}/images/``, labelled ``0..k-1`` in
    the order of ``digits``, and split per class into ``{root}/train.txt``
    and ``{root}/test.txt``. Existing complete outputs are kept as they are.

    Returns:
        dict: Number of images per split.
    """
    from sklearn.datasets import load_digits

    counts = complete_split_counts(root)
    if counts is not None:
        return counts
    data = load_digits()
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    lines = dict(train=[], test=[])
    for label, digit in enumerate(digits):
        indices = np.flatnonzero(data.target == digit)
        rng.shuffle(indices)
        num_train = int(round(train_fraction * len(indices)))
        for rank, index in enumerate(indices):
            name = f'images/{digit}_{index:04d}.png'
            pixels = (data.images[index] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels).resize((size, size),
                                           Image.BILINEAR).save(
                                               osp.join(root, name))
            split = 'train' if rank < num_train else 'test'
            lines[split].append(f'{name} {label}\n')
    return write_split_lists(root, lines, mark_complete=True)


def write_vtab1k_standin(root: str,
                         tasks: Sequence[str],
                         images_per_split: int = 4,
                         size: int = 32,
                         seed: int = 0) -> None:
    """Write tiny stand-in tasks in the VTAB-1k layout (real images).

    For each task, scikit-learn digits as ``size`` x ``size`` PNGs under
    ``{root}/{task}/images/`` and the four lists ``train800.txt``,
    ``val200.txt``, ``train800val200.txt`` and ``test.txt`` (``path label``
    lines) with labels ``digit % num_classes`` of the task. Used by
    ``tools/suites/vtab.py --dry-run`` and the tests.
    """
    from sklearn.datasets import load_digits

    from .vtab1k import vtab1k_task
    data = load_digits()
    rng = np.random.default_rng(seed)
    for task in tasks:
        num_classes = vtab1k_task(task).num_classes
        folder = osp.join(root, task)
        os.makedirs(osp.join(folder, 'images'), exist_ok=True)
        picked = rng.choice(len(data.images), 3 * images_per_split,
                            replace=False)
        lines = []
        for index in picked:
            name = f'images/{index:04d}.png'
            pixels = (data.images[index] * (255 / 16)).astype(np.uint8)
            Image.fromarray(pixels).resize((size, size),
                                           Image.BILINEAR).save(
                                               osp.join(folder, name))
            lines.append(f'{name} {data.target[index] % num_classes}\n')
        train, val = lines[:images_per_split], \
            lines[images_per_split:images_per_split * 3 // 2]
        write_split_lists(
            folder,
            dict(train800=train, val200=val, train800val200=train + val,
                 test=lines[images_per_split * 3 // 2:]))


def write_lfw_faces_task(root: str,
                         train_fraction: float = 0.5,
                         size: int = 32,
                         seed: int = 0) -> Dict[str, int]:
    """Write scikit-image's LFW subset as a two-class task: 100 real
    25x25 face crops (label 1) and 100 non-face crops (label 0), upscaled
    to ``size`` x ``size`` PNGs, in the same layout as
    :func:`write_digits_task`. Returns the number of images per split."""
    from skimage.data import lfw_subset

    images = lfw_subset()  # faces first, then non-faces
    labels = np.arange(len(images)) < len(images) // 2
    rng = np.random.default_rng(seed)
    os.makedirs(osp.join(root, 'images'), exist_ok=True)
    lines = dict(train=[], test=[])
    for label in (0, 1):
        indices = np.flatnonzero(labels == label)
        rng.shuffle(indices)
        num_train = int(round(train_fraction * len(indices)))
        for rank, index in enumerate(indices):
            name = f'images/{index:03d}.png'
            Image.fromarray((images[index] * 255).astype(np.uint8)).resize(
                (size, size), Image.BILINEAR).save(osp.join(root, name))
            split = 'train' if rank < num_train else 'test'
            lines[split].append(f'{name} {label}\n')
    return write_split_lists(root, lines)
