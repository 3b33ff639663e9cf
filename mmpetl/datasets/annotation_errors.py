# Copyright (c) mmpetl contributors. All rights reserved.
"""Checks shared by the benchmark datasets: every problem in an annotation
file is one :class:`AnnotationError` naming the file and the line (or
entry) at fault."""
import os.path as osp


class AnnotationError(ValueError):
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
