# Copyright (c) mmpetl contributors. All rights reserved.
"""Checks shared by the benchmark datasets: every problem in an annotation
file is one :class:`AnnotationError` naming the file and the line (or
entry) at fault."""
import os.path as osp
from typing import List

from ..utils.errors import InputError


class AnnotationError(InputError, ValueError):
    """An annotation (split) file is missing, malformed or inconsistent."""


def check_sample(source: str, where: str, img_path: str, label: int,
                 num_classes: int) -> None:
    """Raise :class:`AnnotationError` if the image of one annotation entry
    does not exist or its label is outside ``[0, num_classes)``.

    Args:
        source (str): The annotation file.
        where (str): The entry's position, e.g. ``'line 12'``.
        img_path (str): The image path the entry resolves to.
        label (int): The entry's label.
        num_classes (int): The task's class count.
    """
    if not 0 <= label < num_classes:
        raise AnnotationError(
            f'{source}, {where}: label {label} is outside [0, {num_classes})')
    if not osp.isfile(img_path):
        raise AnnotationError(
            f'{source}, {where}: image {img_path} does not exist')


def read_path_label_list(ann_file: str, img_root: str, num_classes: int,
                         what: str, spaces_in_paths: bool = False
                         ) -> List[dict]:
    """Read a split list of ``relative/path label`` lines into mmpretrain
    samples ``dict(img_path, gt_label)``, checking every line.

    Args:
        ann_file (str): The list file.
        img_root (str): The folder the paths are relative to.
        num_classes (int): Labels must lie in ``[0, num_classes)``.
        what (str): Names the data in the missing-file error, e.g.
            ``'VTAB-1k cifar'``.
        spaces_in_paths (bool): Split each line at its last space only
            (the few-shot lists name files with spaces); otherwise a line
            must have exactly two fields.

    Raises:
        AnnotationError: When the file is missing or lists nothing, a line
            is not ``path label``, an image does not exist or a label is
            outside the range; the message names the file and line.
    """
    if not osp.isfile(ann_file):
        raise AnnotationError(f'{what} list file {ann_file} does not exist')
    data_list = []
    with open(ann_file) as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            fields = line.strip().rsplit(maxsplit=1) if spaces_in_paths \
                else line.split()
            if len(fields) != 2 or not fields[1].lstrip('-').isdigit():
                raise AnnotationError(
                    f'{ann_file}, line {number}: expected '
                    f"'relative/path.jpg label', got {line.strip()!r}")
            img_path = osp.join(img_root, fields[0])
            label = int(fields[1])
            check_sample(ann_file, f'line {number}', img_path, label,
                         num_classes)
            data_list.append(dict(img_path=img_path, gt_label=label))
    if not data_list:
        raise AnnotationError(f'{ann_file} lists no images')
    return data_list
