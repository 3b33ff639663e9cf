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


def _write_digit_images(img_root: str, count: int, num_classes: int,
                        rng: np.random.Generator,
                        size: int) -> List[str]:
    """Write ``count`` random scikit-learn digits as ``size`` x ``size``
    PNGs into ``img_root``; returns their ``name label`` lines (labels
    ``digit % num_classes``)."""
    from sklearn.datasets import load_digits

    data = load_digits()
    os.makedirs(img_root, exist_ok=True)
    lines = []
    for index in rng.choice(len(data.images), count, replace=False):
        name = f'{index:04d}.png'
        pixels = (data.images[index] * (255 / 16)).astype(np.uint8)
        Image.fromarray(pixels).resize((size, size), Image.BILINEAR).save(
            osp.join(img_root, name))
        lines.append(f'{name} {data.target[index] % num_classes}\n')
    return lines


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
    ``tools/suites/vtab.py --dry-run`` and the tests; their counts are not
    VTAB-1k's (the suite records them as data variant ``standin``).
    """
    from .vtab1k import vtab1k_task
    rng = np.random.default_rng(seed)
    for task in tasks:
        folder = osp.join(root, task)
        lines = [f'images/{line}' for line in _write_digit_images(
            osp.join(folder, 'images'), 3 * images_per_split,
            vtab1k_task(task).num_classes, rng, size)]
        train, val = lines[:images_per_split], \
            lines[images_per_split:images_per_split * 3 // 2]
        write_split_lists(
            folder,
            dict(train800=train, val200=val, train800val200=train + val,
                 test=lines[images_per_split * 3 // 2:]))


def write_fewshot_standin(root: str,
                          sets: Sequence[str],
                          shots: Sequence[int] = (1, 2, 4, 8, 16),
                          seeds: Sequence[int] = (0, 1, 2),
                          images_per_split: int = 4,
                          size: int = 32,
                          seed: int = 0) -> None:
    """Write tiny stand-in sets in the few-shot layout of NOAH (real
    images): per set, scikit-learn digits under its image folder and the
    lists ``annotations/train_meta.list.num_shot_{K}.seed_{S}`` (for every
    K and S), ``val_meta.list`` and ``test_meta.list`` with
    ``images_per_split`` lines each (not K per class: the suite records
    them as data variant ``standin``)."""
    from .fewshot import fewshot_list_file, fewshot_set
    rng = np.random.default_rng(seed)
    for name in sets:
        entry = fewshot_set(name)
        folder = osp.join(root, entry.folder)
        lines = _write_digit_images(
            osp.join(folder, entry.image_dir), 3 * images_per_split,
            entry.num_classes, rng, size)
        os.makedirs(osp.join(folder, 'annotations'), exist_ok=True)
        train = lines[:images_per_split]
        splits = {
            fewshot_list_file('train', k, s): train
            for k in shots for s in seeds
        }
        splits[fewshot_list_file('val', 0, 0)] = \
            lines[images_per_split:2 * images_per_split]
        splits[fewshot_list_file('test', 0, 0)] = lines[2 * images_per_split:]
        for path, split_lines in splits.items():
            with open(osp.join(folder, path), 'w') as f:
                f.writelines(split_lines)


def write_holdout_split(root: str,
                        source: str = 'train',
                        fraction: float = 0.2,
                        names: Sequence[str] = ('search_train', 'search_val'),
                        seed: int = 0) -> Dict[str, int]:
    """Split ``{root}/{source}.txt`` per label into ``{root}/{names[0]}.txt``
    and a held-out ``{root}/{names[1]}.txt`` (``fraction`` of each label,
    at least one image): the train / validation lists of the
    hyper-parameter search on a task that ships only train / test lists.
    Returns lines per written list."""
    with open(osp.join(root, f'{source}.txt')) as f:
        lines = [line for line in f if line.strip()]
    by_label: Dict[str, List[str]] = {}
    for line in lines:
        by_label.setdefault(line.rsplit(maxsplit=1)[1], []).append(line)
    rng = np.random.default_rng(seed)
    kept, held_out = [], []
    for label in sorted(by_label):
        members = by_label[label]
        order = rng.permutation(len(members))
        num_held = max(1, int(round(fraction * len(members))))
        held = set(order[:num_held].tolist())
        for i, line in enumerate(members):
            (held_out if i in held else kept).append(line)
    return write_split_lists(root, {names[0]: kept, names[1]: held_out})


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
