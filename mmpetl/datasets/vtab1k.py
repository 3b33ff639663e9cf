# Copyright (c) mmpetl contributors. All rights reserved.
"""VTAB-1k: 19 tasks, 1,000 training images each (Zhai et al., 2019), in
the layout the PETL papers share (VPT, NOAH, RepAdapter, ARC)::

    {data_root}/{task}/train800.txt        800 lines ``relative/path.jpg label``
    {data_root}/{task}/val200.txt          200 lines
    {data_root}/{task}/train800val200.txt  the 1,000 training images
    {data_root}/{task}/test.txt            the test set
    {data_root}/{task}/images/...          paths relative to the task folder

The papers train on ``train800val200`` and report top-1 on ``test``.
"""
import os.path as osp
from typing import Dict, List, NamedTuple

from mmpretrain.datasets import BaseDataset

from mmpetl.registry import DATASETS
from ..utils.errors import UnknownNameError
from .annotation_errors import read_path_label_list


class VTABTask(NamedTuple):
    """One VTAB-1k task: its group and class count, and the RepAdapter
    scale ``s`` its paper chose for it from {0.1, 0.5, 1, 5, 10}."""
    group: str
    num_classes: int
    repadapter_scale: float


#: The 19 tasks in the papers' order (Natural | Specialized | Structured).
VTAB1K_TASKS: Dict[str, VTABTask] = {
    'cifar': VTABTask('natural', 100, 0.1),
    'caltech101': VTABTask('natural', 102, 5),
    'dtd': VTABTask('natural', 47, 1),
    'oxford_flowers102': VTABTask('natural', 102, 0.5),
    'oxford_iiit_pet': VTABTask('natural', 37, 0.1),
    'svhn': VTABTask('natural', 10, 10),
    'sun397': VTABTask('natural', 397, 0.1),
    'patch_camelyon': VTABTask('specialized', 2, 1),
    'eurosat': VTABTask('specialized', 10, 1),
    'resisc45': VTABTask('specialized', 45, 5),
    'diabetic_retinopathy': VTABTask('specialized', 5, 0.1),
    'clevr_count': VTABTask('structured', 8, 0.5),
    'clevr_dist': VTABTask('structured', 6, 0.1),
    'dmlab': VTABTask('structured', 6, 5),
    'kitti': VTABTask('structured', 4, 5),
    'dsprites_loc': VTABTask('structured', 16, 5),
    'dsprites_ori': VTABTask('structured', 16, 0.1),
    'smallnorb_azi': VTABTask('structured', 18, 10),
    'smallnorb_ele': VTABTask('structured', 9, 1),
}
VTAB1K_GROUPS = ('natural', 'specialized', 'structured')
VTAB1K_SPLITS = ('train800', 'val200', 'train800val200', 'test')
#: Images per split of the real VTAB-1k: the 1,000 training images, and
#: each task's test split as task_adaptation defines it (the full TFDS
#: test split, or a percentage slice: e.g. smallnorb ``test[50%:]`` of
#: 24,300 = 12,150, dsprites 10% of 737,280 = 73,728).
VTAB1K_TRAIN_SIZES = dict(train800=800, val200=200, train800val200=1000)
VTAB1K_TEST_SIZES: Dict[str, int] = {
    'cifar': 10000, 'caltech101': 6084, 'dtd': 1880,
    'oxford_flowers102': 6149, 'oxford_iiit_pet': 3669, 'svhn': 26032,
    'sun397': 21750, 'patch_camelyon': 32768, 'eurosat': 5400,
    'resisc45': 6300, 'diabetic_retinopathy': 42670, 'clevr_count': 15000,
    'clevr_dist': 15000, 'dmlab': 22735, 'kitti': 711,
    'dsprites_loc': 73728, 'dsprites_ori': 73728, 'smallnorb_azi': 12150,
    'smallnorb_ele': 12150,
}


def vtab1k_task(name: str) -> VTABTask:
    """The table entry of task ``name``, with a clear error if unknown."""
    if name not in VTAB1K_TASKS:
        raise UnknownNameError(
            f'unknown VTAB-1k task {name!r}; the tasks are '
            f'{", ".join(VTAB1K_TASKS)}')
    return VTAB1K_TASKS[name]


#: The attention-only RepAdapter's own per-task scales (the reference code's
#: ``configs/repattn/*.yaml``), also chosen from {0.1, 0.5, 1, 5, 10}.
VTAB1K_REPATTN_SCALES: Dict[str, float] = {
    'cifar': 0.1, 'caltech101': 10, 'dtd': 0.1, 'oxford_flowers102': 0.5,
    'oxford_iiit_pet': 0.5, 'svhn': 10, 'sun397': 0.1,
    'patch_camelyon': 0.5, 'eurosat': 5, 'resisc45': 0.1,
    'diabetic_retinopathy': 0.5, 'clevr_count': 1, 'clevr_dist': 0.1,
    'dmlab': 5, 'kitti': 1, 'dsprites_loc': 10, 'dsprites_ori': 5,
    'smallnorb_azi': 10, 'smallnorb_ele': 1,
}


def repattn_scale(name: str) -> float:
    """The attention-only RepAdapter's scale for task ``name``."""
    vtab1k_task(name)  # unknown task: the table's error
    return VTAB1K_REPATTN_SCALES[name]


@DATASETS.register_module()
class VTAB1k(BaseDataset):
    """One VTAB-1k task, read from its split list.

    mmpretrain's :class:`BaseDataset` does the rest (pipeline, metainfo,
    lazy init, serialization). The class count comes from
    :data:`VTAB1K_TASKS`; ``metainfo.classes`` are the label indices as
    strings (the lists carry no class names).

    Args:
        task (str): A key of :data:`VTAB1K_TASKS`, e.g. ``'cifar'``.
        data_root (str): The VTAB-1k folder holding one folder per task.
        split (str): One of ``train800``, ``val200``, ``train800val200``,
            ``test``. Defaults to ``'train800val200'``.
        **kwargs: Other arguments of mmpretrain's ``BaseDataset``
            (``pipeline``, ``test_mode``, ``lazy_init``, ...).

    Raises:
        AnnotationError: When the list file is missing, a line is not
            ``path label``, an image does not exist or a label is outside
            ``[0, num_classes)``; the message names the file and line.
    """
    #: Recorded next to results (see :mod:`mmpetl.datasets.split_check`).
    data_variant = 'vtab-1k'

    def __init__(self,
                 task: str,
                 data_root: str,
                 split: str = 'train800val200',
                 **kwargs):
        if split not in VTAB1K_SPLITS:
            raise ValueError(f'split must be one of {VTAB1K_SPLITS}, '
                             f'got {split!r}')
        self.task = task
        self.split = split
        self.num_classes = vtab1k_task(task).num_classes
        metainfo = dict(
            classes=tuple(str(i) for i in range(self.num_classes)))
        super().__init__(
            ann_file=f'{split}.txt',
            metainfo=metainfo,
            data_root=osp.join(data_root, task),
            **kwargs)

    def load_data_list(self) -> List[dict]:
        return read_path_label_list(self.ann_file, self.data_root,
                                    self.num_classes,
                                    f'VTAB-1k {self.task}')

    @property
    def expected_size(self) -> int:
        """Images the real VTAB-1k has in this task's split (checked by
        :func:`mmpetl.datasets.check_split_data` before a suite run)."""
        return VTAB1K_TRAIN_SIZES.get(self.split) or \
            VTAB1K_TEST_SIZES[self.task]

    def extra_repr(self) -> List[str]:
        return [f'Task: \t{self.task}', f'Split: \t{self.split}']
