# Copyright (c) mmpetl contributors. All rights reserved.
"""The few-shot benchmark of the PETL papers (NOAH, Zhang et al. 2022;
reused by RepAdapter): five fine-grained sets, 1/2/4/8/16 training images
per class, three sampled splits (seeds 0, 1, 2) per shot count, in the
split files NOAH ships (``data/few-shot/{set}/annotations/`` of
ZhangYuanhan-AI/NOAH)::

    {data_root}/{folder}/annotations/train_meta.list.num_shot_{K}.seed_{S}
    {data_root}/{folder}/annotations/val_meta.list
    {data_root}/{folder}/annotations/test_meta.list
    {data_root}/{folder}/{image_dir}/relative/path.jpg

Lines are ``relative/path.jpg label`` (split at the last space, as NOAH's
loader does; labels ``0..n-1``). Images are those of CoOp's dataset
downloads; NOAH's loader reads them under ``images/``, except Stanford
Cars, whose paths (``cars_train/...``) are relative to the set folder.
The folder names are those of NOAH's repository (including its spelling
``standford-cars``); pass ``folder`` / ``image_dir`` to override.

Papers train on the K-shot list and report top-1 on ``test``; ``val``
serves the hyper-parameter search (``tools/suites/vtab.py --search``).
"""
import os.path as osp
from typing import Dict, List, NamedTuple, Optional

from mmpretrain.datasets import BaseDataset

from mmpetl.registry import DATASETS
from ..utils.errors import UnknownNameError
from .annotation_errors import read_path_label_list


class FewShotSet(NamedTuple):
    """Where one few-shot set lives under the few-shot root, its image
    folder (relative to it) and its class count."""
    folder: str
    image_dir: str
    num_classes: int


#: The five sets of RepAdapter's few-shot table, in its order.
FEWSHOT_SETS: Dict[str, FewShotSet] = {
    'fgvc_aircraft': FewShotSet('fgvc-aircraft', 'images', 100),
    'food101': FewShotSet('food101', 'images', 101),
    'oxford_flowers102': FewShotSet('oxford-flowers102', 'images', 102),
    'oxford_pets': FewShotSet('oxford-pets', 'images', 37),
    'stanford_cars': FewShotSet('standford-cars', '', 196),
}
#: The shots K (images per class) of the benchmark.
FEWSHOT_SHOTS = (1, 2, 4, 8, 16)
FEWSHOT_SEEDS = (0, 1, 2)
FEWSHOT_SPLITS = ('train', 'val', 'test')


def fewshot_set(name: str) -> FewShotSet:
    """The table entry of set ``name``, with a clear error if unknown."""
    if name not in FEWSHOT_SETS:
        raise UnknownNameError(
            f'unknown few-shot set {name!r}; the sets are '
            f'{", ".join(FEWSHOT_SETS)}')
    return FEWSHOT_SETS[name]


def fewshot_list_file(split: str, shots: int, seed: int) -> str:
    """The split file of ``split`` relative to the set folder."""
    if split == 'train':
        return f'annotations/train_meta.list.num_shot_{shots}.seed_{seed}'
    return f'annotations/{split}_meta.list'


@DATASETS.register_module()
class FewShot(BaseDataset):
    """One few-shot set at one shot count and split seed.

    Args:
        name (str): A key of :data:`FEWSHOT_SETS`, e.g. ``'food101'``.
        data_root (str): The folder holding the set folders.
        split (str): ``train`` (the K-shot list of ``seed``), ``val`` or
            ``test``. Defaults to ``'train'``.
        shots (int): Training images per class, one of
            :data:`FEWSHOT_SHOTS`. Defaults to 16.
        seed (int): Which sampled K-shot list (0, 1, 2). Defaults to 0.
        folder (str, optional): The set folder; defaults to the table's.
        image_dir (str, optional): Image folder relative to the set folder;
            defaults to the table's.
        **kwargs: Other arguments of mmpretrain's ``BaseDataset``.

    Raises:
        AnnotationError: When the list file is missing, a line is not
            ``path label``, an image does not exist or a label is outside
            ``[0, num_classes)``; the message names the file and line.
    """
    #: Recorded next to results (see :mod:`mmpetl.datasets.split_check`).
    data_variant = 'noah-few-shot'

    def __init__(self,
                 name: str,
                 data_root: str,
                 split: str = 'train',
                 shots: int = 16,
                 seed: int = 0,
                 folder: Optional[str] = None,
                 image_dir: Optional[str] = None,
                 **kwargs):
        entry = fewshot_set(name)
        if split not in FEWSHOT_SPLITS:
            raise ValueError(f'split must be one of {FEWSHOT_SPLITS}, '
                             f'got {split!r}')
        if shots not in FEWSHOT_SHOTS:
            raise ValueError(f'shots must be one of {FEWSHOT_SHOTS}, '
                             f'got {shots!r}')
        self.name, self.split, self.shots, self.seed = name, split, shots, \
            seed
        self.num_classes = entry.num_classes
        super().__init__(
            ann_file=fewshot_list_file(split, shots, seed),
            metainfo=dict(
                classes=tuple(str(i) for i in range(self.num_classes))),
            data_root=osp.join(data_root, folder or entry.folder),
            data_prefix=entry.image_dir if image_dir is None else image_dir,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        return read_path_label_list(
            self.ann_file, self.data_prefix['img_path'] or self.data_root,
            self.num_classes, f'few-shot {self.name}', spaces_in_paths=True)

    @property
    def expected_size(self) -> Optional[int]:
        """``shots x num_classes`` for the training list (NOAH's lists hold
        exactly K images of every class); None for val / test, whose
        sizes the benchmark does not fix."""
        return self.shots * self.num_classes if self.split == 'train' \
            else None

    def extra_repr(self) -> List[str]:
        return [f'Set: \t{self.name}', f'Split: \t{self.split}',
                f'Shots: \t{self.shots} (seed {self.seed})']
