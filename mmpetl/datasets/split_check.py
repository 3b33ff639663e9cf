# Copyright (c) mmpetl contributors. All rights reserved.
"""Check a run's data before training: every split list complete (its
image count against the benchmark's known count) and every image
readable, so that a long suite run fails in its first second, naming the
task and the file, rather than hours later.

A dataset that knows its benchmark's counts has an ``expected_size``
property (``VTAB1k``: 800 / 200 / 1,000 / the task's test size;
``FewShot``: ``shots x classes`` for the K-shot list) and a
``data_variant`` name (``'vtab-1k'``, ``'noah-few-shot'``). Data of another
variant (the tiny stand-in tasks, a re-split, a subset) is accepted by
naming it: the counts are then reported, not enforced, and the name is
recorded next to each result.
"""
import copy
from typing import NamedTuple, Optional

from mmengine.registry import DefaultScope
from PIL import Image

from mmpetl.registry import DATASETS
from .annotation_errors import AnnotationError

#: Recorded for datasets that declare no variant of their own.
CUSTOM_VARIANT = 'custom'


class SplitCheck(NamedTuple):
    """What :func:`check_split_data` found for one dataset config."""
    ann_file: str
    images: int
    expected: Optional[int]
    data_variant: str


def _unreadable(path: str) -> Optional[str]:
    """Why ``path`` is not a readable image (None if it is): PIL opens
    the header and runs its structure check (``verify``)."""
    try:
        with Image.open(path) as image:
            image.verify()
    except Exception as e:  # PIL raises many types for bad files
        return f'{type(e).__name__}: {e}'
    return None


def check_split_data(dataset_cfg: dict,
                     what: str,
                     data_variant: Optional[str] = None,
                     default_scope: str = 'mmpretrain') -> SplitCheck:
    """Load the list of ``dataset_cfg`` (no pipeline), check its image
    count and open every image.

    Args:
        dataset_cfg (dict): A dataloader's ``dataset`` config.
        what (str): Names the data in errors, e.g. ``'arc / cifar, train'``.
        data_variant (str, optional): None to enforce the dataset's known
            counts (``expected_size``) and record its own ``data_variant``;
            a name (e.g. ``'standin'``) to accept other counts and record
            that name.
        default_scope (str): Registry scope of the dataset's type.

    Returns:
        SplitCheck: list file, images found, images expected (None if
        unknown) and the variant to record.

    Raises:
        AnnotationError: The dataset's own errors (missing list, bad line,
            missing image), a count that differs from the known one, or an
            unreadable image; one line naming ``what`` and the file.
    """
    cfg = copy.deepcopy(dict(dataset_cfg))
    cfg.update(pipeline=[], lazy_init=False, serialize_data=False)
    cfg.pop('indices', None)  # count the whole list, not a dry run's part
    with DefaultScope.overwrite_default_scope(default_scope):
        try:
            dataset = DATASETS.build(cfg)
        except AnnotationError as e:
            raise AnnotationError(f'{what}: {e}') from None
    ann_file = getattr(dataset, 'ann_file', '') or str(cfg.get('ann_file'))
    expected = getattr(dataset, 'expected_size', None)
    images = len(dataset)
    if data_variant is None:
        data_variant = getattr(dataset, 'data_variant', CUSTOM_VARIANT)
        if expected is not None and images != expected:
            raise AnnotationError(
                f'{what}: {ann_file} lists {images} images, {data_variant} '
                f'has {expected} (a short or wrong list; for other data, '
                'name its variant with --data-variant NAME)')
    for index in range(images):
        path = dataset.get_data_info(index)['img_path']
        reason = _unreadable(path)
        if reason:
            raise AnnotationError(
                f'{what}: image {path} (entry {index + 1} of {ann_file}) '
                f'cannot be read ({reason})')
    return SplitCheck(ann_file, images, expected, data_variant)
