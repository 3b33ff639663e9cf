# Copyright (c) mmpetl contributors. All rights reserved.
"""VTAB1k and FGVC datasets on real images (scikit-learn digits,
scikit-image's LFW crops): loading through the registry and mmpretrain's
pipeline, and errors that name the file and line (or entry)."""
import json
import os

import numpy as np
import pytest
from mmengine.registry import DefaultScope
from PIL import Image

from mmpetl.datasets import (FGVC, AnnotationError, VTAB1k,
                             write_vtab1k_standin)
from mmpetl.registry import DATASETS

PIPELINE = [dict(type='LoadImageFromFile'),
            dict(type='Resize', scale=(24, 24), interpolation='bicubic'),
            dict(type='PackInputs')]


@pytest.fixture
def vtab_root(tmp_path):
    write_vtab1k_standin(str(tmp_path), ['kitti', 'svhn'])
    return tmp_path


def test_vtab1k_loads_a_task_through_the_registry(vtab_root):
    # Scoped: a global default scope would leak into other tests.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(
            dict(type='mmpetl.VTAB1k', task='kitti',
                 data_root=str(vtab_root), split='train800val200',
                 pipeline=PIPELINE))
    assert isinstance(dataset, VTAB1k)
    lines = (vtab_root / 'kitti' / 'train800val200.txt').read_text().split(
        '\n')
    assert len(dataset) == len([line for line in lines if line])
    assert dataset.metainfo['classes'] == ('0', '1', '2', '3')
    sample = dataset[0]
    assert tuple(sample['inputs'].shape) == (3, 24, 24)
    first_path, first_label = lines[0].split()
    assert sample['data_samples'].gt_label.item() == int(first_label)
    assert dataset.get_data_info(0)['img_path'] == str(
        vtab_root / 'kitti' / first_path)
    assert all(0 <= label < 4 for label in dataset.get_gt_labels())
    lazy = VTAB1k('svhn', str(vtab_root), split='test', lazy_init=True)
    assert not lazy._fully_initialized
    assert len(lazy) == 6 and lazy.metainfo['classes'][-1] == '9'


@pytest.mark.parametrize('line,message', [
    ('images/0000.png', "line 2: expected 'relative/path.jpg label'"),
    ('images/0000.png 1 2', "line 2: expected 'relative/path.jpg label'"),
    ('images/0000.png one', "line 2: expected 'relative/path.jpg label'"),
    ('images/missing.png 1', 'line 2: image '),
    ('{first} 4', 'line 2: label 4 is outside [0, 4)'),
    ('{first} -1', 'line 2: label -1 is outside [0, 4)'),
])
def test_vtab1k_bad_lines_name_file_and_line(vtab_root, line, message):
    path = vtab_root / 'kitti' / 'test.txt'
    first = path.read_text().split('\n')[0]
    path.write_text(first + '\n' + line.format(first=first.split()[0]) +
                    '\n')
    with pytest.raises(AnnotationError) as error:
        VTAB1k('kitti', str(vtab_root), split='test')
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_vtab1k_missing_list_and_unknown_task(vtab_root):
    os.remove(vtab_root / 'kitti' / 'val200.txt')
    with pytest.raises(AnnotationError, match=r'kitti/val200\.txt does not'):
        VTAB1k('kitti', str(vtab_root), split='val200')
    with pytest.raises(KeyError, match="unknown VTAB-1k task 'kitty'"):
        VTAB1k('kitty', str(vtab_root))
    with pytest.raises(ValueError, match='split must be one of'):
        VTAB1k('kitti', str(vtab_root), split='train')


@pytest.fixture
def cub_root(tmp_path):
    """200 real LFW crops as CUB-200-2011 with VPT's 1-based class ids."""
    from skimage.data import lfw_subset
    images = lfw_subset()
    folder = tmp_path / 'CUB_200_2011'
    entries = {}
    for index, image in enumerate(images):
        name = f'{index % 7:03d}.Bird/{index:04d}.jpg'
        os.makedirs(folder / 'images' / osp_dir(name), exist_ok=True)
        Image.fromarray((image * 255).astype(np.uint8)).save(
            folder / 'images' / name)
        entries[name] = index + 1
    names = list(entries)
    splits = dict(train=entries,
                  val={n: entries[n] for n in names[:10]},
                  test={n: entries[n] for n in names[::4]})
    for split, split_entries in splits.items():
        (folder / f'{split}.json').write_text(json.dumps(split_entries))
    return tmp_path


def osp_dir(name):
    return name.rsplit('/', 1)[0]


def test_fgvc_maps_vpt_class_ids_and_loads(cub_root):
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        dataset = DATASETS.build(
            dict(type='mmpetl.FGVC', name='cub', data_root=str(cub_root),
                 split='test', pipeline=PIPELINE))
    assert len(dataset) == 50
    assert dataset.get_data_info(1)['gt_label'] == 4  # id 5 -> label 4
    assert dataset.get_data_info(1)['img_path'] == str(
        cub_root / 'CUB_200_2011' / 'images' / '004.Bird' / '0004.jpg')
    assert tuple(dataset[1]['inputs'].shape) == (3, 24, 24)
    assert len(FGVC('cub', str(cub_root), split='trainval')) == 210
    assert len(dataset.metainfo['classes']) == 200


def test_fgvc_errors_name_file_and_entry(cub_root):
    folder = cub_root / 'CUB_200_2011'
    test_json = json.loads((folder / 'test.json').read_text())
    name = list(test_json)[3]
    test_json[name] = 201
    (folder / 'test.json').write_text(json.dumps(test_json))
    with pytest.raises(AnnotationError) as error:
        FGVC('cub', str(cub_root), split='test')
    assert f"{folder / 'test.json'}, entry 4 ('{name}'): class id 201" in \
        str(error.value)

    (folder / 'val.json').write_text(json.dumps({'missing/x.jpg': 3}))
    with pytest.raises(AnnotationError, match=r"val\.json, entry 1 "
                       r"\('missing/x\.jpg'\): image .* does not exist"):
        FGVC('cub', str(cub_root), split='val')
    (folder / 'val.json').write_text('{"a.jpg": 1,\n "b.jpg": }')
    with pytest.raises(AnnotationError, match=r'val\.json, line 2: not '
                       'valid json'):
        FGVC('cub', str(cub_root), split='val')
    (folder / 'val.json').write_text('{"a.jpg": "1"}')
    with pytest.raises(AnnotationError, match='is not an integer'):
        FGVC('cub', str(cub_root), split='val')
    os.remove(folder / 'test.json')
    with pytest.raises(AnnotationError, match=r'test\.json does not exist'):
        FGVC('cub', str(cub_root), split='test')
    train = json.loads((folder / 'train.json').read_text())
    (folder / 'train.json').write_text(json.dumps(dict(list(
        train.items())[:150])))
    with pytest.raises(AnnotationError, match='150 classes, but cub has 200'):
        FGVC('cub', str(cub_root), split='train')
