# Copyright (c) mmpetl contributors. All rights reserved.
"""The five fine-grained sets of the PETL papers (FGVC), in VPT's split
files (Jia et al., 2022), which NOAH, RepAdapter and ARC reuse::

    {data_root}/{folder}/train.json   {"relative/image/path.jpg": class_id, ...}
    {data_root}/{folder}/val.json
    {data_root}/{folder}/test.json
    {data_root}/{folder}/{image_dir}/relative/image/path.jpg

As in VPT's ``JSONDataset``, the class ids of the files (1-based for some
sets) are mapped to ``0..num_classes-1`` in sorted order; the class list is
that of ``train.json`` so that every split uses the same mapping. Papers
train on ``train`` (or ``train`` + ``val``, ``split='trainval'``) and report
``test``.

The image folders are those of VPT's loaders (an *assumption* for the two
whose archives we have not seen: Oxford Flowers keeps its ``jpg/`` prefix
and Stanford Cars its ``cars_train/`` prefix in the json keys); pass
``image_dir`` to override.
"""
import json
import os.path as osp
from typing import Dict, List, NamedTuple

from mmpretrain.datasets import BaseDataset

from mmpetl.registry import DATASETS
from ..utils.errors import UnknownNameError
from .annotation_errors import AnnotationError, check_sample


class FGVCSet(NamedTuple):
    """Where one FGVC set lives under the FGVC root, and its class count."""
    folder: str
    image_dir: str
    num_classes: int


#: The five FGVC sets by name: folder, image folder and class count.
FGVC_SETS: Dict[str, FGVCSet] = {
    'cub': FGVCSet('CUB_200_2011', 'images', 200),
    'nabirds': FGVCSet('nabirds', 'images', 555),
    'oxford_flowers': FGVCSet('OxfordFlower', '', 102),
    'stanford_dogs': FGVCSet('Stanford-dogs', 'Images', 120),
    'stanford_cars': FGVCSet('Stanford-cars', '', 196),
}
FGVC_SPLITS = ('train', 'val', 'trainval', 'test')


def fgvc_set(name: str) -> FGVCSet:
    """The table entry of set ``name``, with a clear error if unknown."""
    if name not in FGVC_SETS:
        raise UnknownNameError(
            f'unknown FGVC set {name!r}; the sets are '
            f'{", ".join(FGVC_SETS)}')
    return FGVC_SETS[name]


@DATASETS.register_module()
class FGVC(BaseDataset):
    """One FGVC set, read from VPT's json split files.

    Args:
        name (str): A key of :data:`FGVC_SETS`, e.g. ``'cub'``.
        data_root (str): The folder holding the five set folders.
        split (str): ``train``, ``val``, ``trainval`` (both) or ``test``.
            Defaults to ``'train'``.
        image_dir (str, optional): Image folder relative to the set folder;
            defaults to the table's.
        **kwargs: Other arguments of mmpretrain's ``BaseDataset``.

    Raises:
        AnnotationError: When a split file is missing or not a json object
            of ``path: integer`` entries, a class id is not among
            ``train.json``'s, ``train.json`` does not have ``num_classes``
            classes, or an image does not exist; the message names the file
            and the entry.
    """

    def __init__(self,
                 name: str,
                 data_root: str,
                 split: str = 'train',
                 image_dir: str = None,
                 **kwargs):
        if name not in FGVC_SETS:
            raise UnknownNameError(
                f'unknown FGVC set {name!r}; the sets are '
                f'{", ".join(FGVC_SETS)}')
        if split not in FGVC_SPLITS:
            raise ValueError(f'split must be one of {FGVC_SPLITS}, '
                             f'got {split!r}')
        self.name = name
        self.split = split
        fgvc_set = FGVC_SETS[name]
        self.num_classes = fgvc_set.num_classes
        super().__init__(
            ann_file=f'{split}.json',
            metainfo=dict(
                classes=tuple(str(i) for i in range(self.num_classes))),
            data_root=osp.join(data_root, fgvc_set.folder),
            data_prefix=fgvc_set.image_dir if image_dir is None else image_dir,
            **kwargs)

    def _read_split(self, split: str) -> Dict[str, int]:
        path = osp.join(self.data_root, f'{split}.json')
        if not osp.isfile(path):
            raise AnnotationError(
                f'FGVC {self.name} split file {path} does not exist')
        try:
            with open(path) as f:
                entries = json.load(f)
        except json.JSONDecodeError as e:
            raise AnnotationError(f'{path}, line {e.lineno}: not valid json '
                                  f'({e.msg})')
        if not isinstance(entries, dict) or not entries:
            raise AnnotationError(f'{path}: expected a non-empty json object '
                                  '{"relative/path.jpg": class_id}')
        for number, (key, value) in enumerate(entries.items(), 1):
            if not isinstance(value, int) or isinstance(value, bool):
                raise AnnotationError(
                    f'{path}, entry {number} ({key!r}): class id {value!r} '
                    'is not an integer')
        return entries

    def load_data_list(self) -> List[dict]:
        train_entries = self._read_split('train')
        class_ids = sorted(set(train_entries.values()))
        train_file = osp.join(self.data_root, 'train.json')
        if len(class_ids) != self.num_classes:
            raise AnnotationError(
                f'{train_file}: {len(class_ids)} classes, but {self.name} '
                f'has {self.num_classes}')
        label_of = {class_id: i for i, class_id in enumerate(class_ids)}
        splits = ('train', 'val') if self.split == 'trainval' \
            else (self.split, )
        img_dir = self.data_prefix['img_path'] or self.data_root
        data_list = []
        for split in splits:
            source = osp.join(self.data_root, f'{split}.json')
            entries = train_entries if split == 'train' \
                else self._read_split(split)
            for number, (path, class_id) in enumerate(entries.items(), 1):
                where = f'entry {number} ({path!r})'
                if class_id not in label_of:
                    raise AnnotationError(
                        f'{source}, {where}: class id {class_id} is not '
                        f'one of the {self.num_classes} class ids of '
                        f'{train_file}')
                img_path = osp.join(img_dir, path)
                check_sample(source, where, img_path, label_of[class_id],
                             self.num_classes)
                data_list.append(
                    dict(img_path=img_path, gt_label=label_of[class_id]))
        return data_list

    def extra_repr(self) -> List[str]:
        return [f'Set: \t{self.name}', f'Split: \t{self.split}']
