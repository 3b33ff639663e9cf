# Copyright (c) mmpetl contributors. All rights reserved.
"""The standard protocol of tools/suites/vtab.py (search on the validation
split, pick per task, retrain and test per seed, mean ± std), the few-shot
benchmark (dataset, configs, suite run) and the data check before a run,
on real scikit-learn digits in the VTAB-1k and few-shot layouts."""
import csv
import glob
import json
import os
import os.path as osp
import statistics
import subprocess
import sys

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmpetl.datasets import (FEWSHOT_SETS, FEWSHOT_SHOTS, AnnotationError,
                             FewShot, check_split_data, fewshot_set,
                             write_digits_task, write_fewshot_standin,
                             write_holdout_split, write_vtab1k_standin)
from mmpetl.registry import DATASETS
from mmpetl.suites.protocol import (grid_points, parse_search, point_name,
                                    with_values)

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
FEWSHOT = osp.join(ROOT, 'configs', 'fewshot')


def suite(*args, cwd=ROOT, check=True):
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get(
                   'PYTHONPATH', '')]))
    result = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'suites', 'vtab.py'),
         *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + \
            result.stderr[-3000:]
    return result


# --- few-shot dataset ----------------------------------------------------

def test_fewshot_reads_noah_split_files(tmp_path):
    write_fewshot_standin(str(tmp_path), ['oxford_pets', 'stanford_cars'],
                          shots=(2, ), seeds=(0, 1))
    pets = tmp_path / 'oxford-pets'
    # NOAH's lists split at the last space: file names may hold spaces.
    first = (pets / 'annotations' / 'val_meta.list').read_text().split()[0]
    os.rename(pets / 'images' / first, pets / 'images' / 'with space.png')
    (pets / 'annotations' / 'val_meta.list').write_text(
        'with space.png 36\n')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        val = DATASETS.build(dict(type='mmpetl.FewShot', name='oxford_pets',
                                  data_root=str(tmp_path), split='val'))
    assert val.get_data_info(0)['img_path'] == str(
        pets / 'images' / 'with space.png')
    assert val.get_data_info(0)['gt_label'] == 36
    assert val.expected_size is None
    seed1 = FewShot('oxford_pets', str(tmp_path), shots=2, seed=1)
    listed = (pets / 'annotations' /
              'train_meta.list.num_shot_2.seed_1').read_text().split('\n')
    assert len(seed1) == len([line for line in listed if line])
    assert seed1.expected_size == 2 * 37
    # Stanford Cars: paths relative to the set folder (cars_train/...).
    cars = FewShot('stanford_cars', str(tmp_path), split='test')
    assert osp.dirname(cars.get_data_info(0)['img_path']) == str(
        tmp_path / 'standford-cars')
    with pytest.raises(AnnotationError,
                       match=r'num_shot_2\.seed_2 does not exist'):
        FewShot('oxford_pets', str(tmp_path), shots=2, seed=2)
    with pytest.raises(ValueError, match='shots must be one of'):
        FewShot('oxford_pets', str(tmp_path), shots=3)
    with pytest.raises(KeyError, match="unknown few-shot set 'pets'"):
        fewshot_set('pets')


def test_fewshot_configs_follow_the_table():
    for method in ('repadapter', 'linear-probe'):
        files = sorted(glob.glob(osp.join(FEWSHOT, method, '*.py')))
        assert files == sorted(
            osp.join(FEWSHOT, method, f'vit-b16_{method}_{name}_{k}shot.py')
            for name in FEWSHOT_SETS for k in FEWSHOT_SHOTS)
        for path in files:
            name, shots = osp.basename(path)[:-len('shot.py')].split(
                f'{method}_')[1].rsplit('_', 1)
            cfg = Config.fromfile(path)
            assert cfg.model.head.num_classes == \
                FEWSHOT_SETS[name].num_classes
            assert (cfg.train_dataloader.dataset.name,
                    cfg.train_dataloader.dataset.shots,
                    cfg.test_dataloader.dataset.name) == (name, int(shots),
                                                          name)
    cfg = Config.fromfile(osp.join(
        FEWSHOT, 'repadapter', 'vit-b16_repadapter_stanford_cars_4shot.py'))
    assert cfg.model.head.num_classes == 196
    assert cfg.data_preprocessor.num_classes == 196
    train = cfg.train_dataloader.dataset
    assert (train.type, train.name, train.split, train.shots, train.seed) \
        == ('mmpetl.FewShot', 'stanford_cars', 'train', 4, 0)
    assert cfg.test_dataloader.dataset.split == 'test'
    assert cfg.model.backbone.scale == 1.0
    assert [a.type for a in cfg.model.train_cfg.augments] == \
        ['Mixup', 'CutMix']
    assert cfg.model.head.loss.label_smooth_val == 0.1
    assert 'RandAugment' in [t.type for t in train.pipeline]
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    probe = Config.fromfile(osp.join(
        FEWSHOT, 'linear-probe', 'vit-b16_linear-probe_food101_16shot.py'))
    assert probe.model.backbone.type == 'mmpetl.FrozenBackbone'
    assert probe.model.head.num_classes == 101


# --- the data check -------------------------------------------------------

def vtab_cfg(root, task='kitti', split='train800'):
    return dict(type='mmpetl.VTAB1k', task=task, data_root=str(root),
                split=split)


def test_data_check_counts_against_vtab1k_and_reads_images(tmp_path):
    write_vtab1k_standin(str(tmp_path), ['kitti'])
    listed = tmp_path / 'kitti' / 'train800.txt'
    with pytest.raises(AnnotationError) as error:
        check_split_data(vtab_cfg(tmp_path), 'arc / kitti, train data')
    message = str(error.value)
    assert message.startswith('arc / kitti, train data: ')
    assert f'{listed} lists 4 images, vtab-1k has 800' in message
    assert '--data-variant' in message
    test = check_split_data(vtab_cfg(tmp_path, split='test'), 'x', 'standin')
    assert (test.images, test.expected, test.data_variant) == (6, 711,
                                                               'standin')
    # A full-size list passes: 800 lines (one real image, repeated).
    line = listed.read_text().split('\n')[0]
    listed.write_text(f'{line}\n' * 800)
    full = check_split_data(vtab_cfg(tmp_path), 'x')
    assert (full.images, full.data_variant) == (800, 'vtab-1k')
    # One short line and the count is off by one.
    listed.write_text(f'{line}\n' * 799)
    with pytest.raises(AnnotationError, match='lists 799 images'):
        check_split_data(vtab_cfg(tmp_path), 'x')


def test_data_check_names_an_unreadable_image(tmp_path):
    write_vtab1k_standin(str(tmp_path), ['svhn'])
    second = (tmp_path / 'svhn' / 'test.txt').read_text().split('\n')[1]
    image = tmp_path / 'svhn' / second.split()[0]
    image.write_bytes(image.read_bytes()[:40])  # truncated PNG
    with pytest.raises(AnnotationError) as error:
        check_split_data(vtab_cfg(tmp_path, 'svhn', 'test'), 'arc / svhn',
                         'standin')
    assert str(error.value).startswith(
        f'arc / svhn: image {image} (entry 2 of ')
    assert 'cannot be read' in str(error.value)


def test_data_check_in_the_suite_stops_before_training(tmp_path):
    """Real configs on stand-in data: the counts are not VTAB-1k's, so the
    suite stops before building a model, in one line naming task and file,
    writing nothing; naming the variant would accept them."""
    write_vtab1k_standin(str(tmp_path / 'data'), ['kitti', 'dtd'])
    work = tmp_path / 'work'
    result = suite('--methods', 'arc', '--tasks', 'dtd', 'kitti',
                   '--data-root', tmp_path / 'data', '--work-dir', work,
                   check=False)
    assert result.returncode == 2, result.stderr[-2000:]
    # One error line, the last (warnings of the stack may precede it).
    errors = [line for line in result.stderr.splitlines()
              if line.startswith('error:')]
    assert errors == result.stderr.strip().splitlines()[-1:]
    assert errors[0].startswith('error: arc / dtd, train data: ')
    assert 'train800val200.txt lists 6 images, vtab-1k has 1000' in errors[0]
    assert not glob.glob(str(work / '*' / '*'))


# --- the protocol ----------------------------------------------------------

def test_search_grid_and_seed_values():
    assert parse_search(['scale=0.1,1,10', 'lr=1e-3']) == dict(
        scale=[0.1, 1, 10], lr=[1e-3])
    with pytest.raises(ValueError, match='KEY=V1,V2'):
        parse_search(['scale'])
    cfg = Config.fromfile(osp.join(
        FEWSHOT, 'repadapter', 'vit-b16_repadapter_food101_2shot.py'))
    search = dict(scale=[0.1, 5], lr=[1e-3, 1e-2])
    points = grid_points(cfg, search)
    assert points == [dict(scale=0.1, lr=1e-3), dict(scale=0.1, lr=1e-2),
                      dict(scale=5, lr=1e-3), dict(scale=5, lr=1e-2)]
    assert point_name(points[1]) == 'scale=0.1_lr=0.01'
    probe = Config.fromfile(osp.join(
        FEWSHOT, 'linear-probe', 'vit-b16_linear-probe_food101_2shot.py'))
    assert grid_points(probe, search) == [dict(lr=1e-3), dict(lr=1e-2)]
    assert grid_points(probe, dict(scale=[1])) == [{}]
    run = with_values(cfg, points[3], seed=2)
    assert run.model.backbone.scale == 5
    assert run.optim_wrapper.optimizer.lr == 1e-2
    assert run.randomness.seed == 2
    assert run.train_dataloader.dataset.seed == 2  # the K-shot list
    assert cfg.train_dataloader.dataset.seed == 0  # the input is unchanged


@pytest.fixture(scope='module')
def protocol_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('protocol')
    out = suite('--methods', 'repadapter', 'linear-probe', '--tasks',
                'kitti', 'dtd', '--dry-run', '--search', 'scale=0.1,10',
                '--seeds', '2', '--work-dir', work).stdout
    return work, out


def test_protocol_searches_picks_and_repeats_seeds(protocol_run):
    work, out = protocol_run
    kitti = work / 'repadapter' / 'kitti'
    grid = []
    for scale in (0.1, 10):
        result = json.loads(
            (kitti / 'search' / f'scale={scale}' / 'result.json').read_text())
        assert result['split'] == 'val' and result['seed'] == 0
        assert result['params'] == dict(scale=scale)
        assert result['data_variant'] == 'standin'
        grid.append(result['top1'])
    # The runner's dumped configs: the search trained on train800 and
    # tested val200; the final runs train800val200, tested on test.
    dumped = Config.fromfile(kitti / 'search' / 'scale=10' /
                             'vit-b16_repadapter_kitti.py')
    assert dumped.train_dataloader.dataset.split == 'train800'
    assert dumped.test_dataloader.dataset.split == 'val200'
    assert dumped.model.backbone.scale == 10
    picked = json.loads((kitti / 'picked.json').read_text())
    best = 0 if grid[0] >= grid[1] else 1
    assert picked['picked'] == dict(scale=(0.1, 10)[best])
    assert picked['val_top1'] == grid[best]
    for seed in (0, 1):
        final = json.loads(
            (kitti / f'seed_{seed}' / 'result.json').read_text())
        assert (final['split'], final['seed']) == ('test', seed)
        assert final['params'] == picked['picked']
    dumped = Config.fromfile(kitti / 'seed_1' / 'vit-b16_repadapter_kitti.py')
    assert dumped.randomness.seed == 1
    assert dumped.model.backbone.scale == picked['picked']['scale']
    assert dumped.train_dataloader.dataset.split == 'train800val200'
    assert dumped.test_dataloader.dataset.split == 'test'
    # The linear probe has no scale: not searched, seeds only.
    assert 'linear-probe / kitti: not searched over scale' in out
    assert not (work / 'linear-probe' / 'kitti' / 'search').exists()
    assert (work / 'linear-probe' / 'kitti' / 'seed_1' /
            'result.json').is_file()
    assert 'repadapter / kitti: picked scale=' in out


def test_protocol_tables_give_mean_and_std_over_seeds(protocol_run):
    work, _ = protocol_run
    rows = {r['method']: r for r in csv.DictReader(
        open(work / 'results.csv'))}
    per_seed = {
        task: [json.loads((work / 'repadapter' / task / f'seed_{s}' /
                           'result.json').read_text())['top1']
               for s in (0, 1)]
        for task in ('kitti', 'dtd')
    }
    row = rows['repadapter']
    for task, values in per_seed.items():
        assert float(row[task]) == pytest.approx(statistics.mean(values))
        assert float(row[f'{task}_std']) == pytest.approx(
            statistics.stdev(values))
    # Aggregates per seed, then over seeds.
    seed_means = [statistics.mean([per_seed[t][s] for t in per_seed])
                  for s in (0, 1)]
    assert float(row['mean']) == pytest.approx(statistics.mean(seed_means))
    assert float(row['mean_std']) == pytest.approx(
        statistics.stdev(seed_means))
    assert (row['seeds'], row['data'], row['tasks_done']) == \
        ('2', 'standin', '2/2')
    markdown = (work / 'results.md').read_text()
    assert f'{statistics.mean(per_seed["kitti"]):.2f} ± ' \
        f'{statistics.stdev(per_seed["kitti"]):.2f}' in markdown
    search = list(csv.DictReader(open(work / 'search.csv')))
    assert [(r['method'], r['task'], r['scale']) for r in search] == [
        ('repadapter', t, s) for t in ('kitti', 'dtd')
        for s in ('0.1', '10')]
    assert sum(r['picked'] == '*' for r in search) == 2
    assert (work / 'results.png').read_bytes()[:4] == b'\x89PNG'


def test_protocol_resumes_without_training_again(protocol_run):
    work, _ = protocol_run
    kitti = work / 'repadapter' / 'kitti'
    checkpoints = {p: os.stat(p).st_mtime_ns for p in glob.glob(
        str(kitti / '**' / 'epoch_1.pth'), recursive=True)}
    assert len(checkpoints) == 4  # 2 grid points + 2 seeds
    os.remove(kitti / 'seed_1' / 'result.json')  # interrupted before test
    out = suite('--methods', 'repadapter', '--tasks', 'kitti', '--dry-run',
                '--search', 'scale=0.1,10', '--seeds', '2', '--work-dir',
                work).stdout
    assert out.count('done, skipped') == 3
    assert 'repadapter / kitti / seed_1: top-1' in out
    assert {p: os.stat(p).st_mtime_ns for p in checkpoints} == checkpoints
    assert (kitti / 'seed_1' / 'result.json').is_file()


def test_fewshot_suite_dry_run_with_seeds(tmp_path):
    out = suite('--config-dir', FEWSHOT, '--methods', 'repadapter',
                '--tasks', 'food101_1shot', 'stanford_cars_16shot',
                '--dry-run', '--seeds', '2', '--work-dir', tmp_path).stdout
    for task in ('food101_1shot', 'stanford_cars_16shot'):
        for seed in (0, 1):
            assert f'repadapter / {task} / seed_{seed}: top-1' in out
            result = json.loads((tmp_path / 'repadapter' / task /
                                 f'seed_{seed}' / 'result.json').read_text())
            assert result['seed'] == seed
    rows = list(csv.DictReader(open(tmp_path / 'results.csv')))
    assert rows[0]['seeds'] == '2' and rows[0]['data'] == 'standin'
    assert 'food101_1shot_std' in rows[0]


def test_holdout_split_and_compare_configs_search(tmp_path):
    root = tmp_path / 'data' / 'quickstart' / 'digits5-9'
    write_digits_task(str(root), (5, 6, 7, 8, 9), train_fraction=0.1)
    counts = write_holdout_split(str(root))
    train = (root / 'train.txt').read_text().splitlines()
    kept = (root / 'search_train.txt').read_text().splitlines()
    held = (root / 'search_val.txt').read_text().splitlines()
    assert sorted(kept + held) == sorted(train)
    assert counts == dict(search_train=len(kept), search_val=len(held))
    for label in '01234':  # every class in both, a fifth held out
        members = [line for line in train if line.endswith(f' {label}')]
        assert sum(line.endswith(f' {label}') for line in held) == max(
            1, round(0.2 * len(members)))
    out = suite('--config-dir', osp.join(ROOT, 'configs', 'compare'),
                '--prefix', 'vit-tiny', '--methods', 'repadapter', '--tasks',
                'digits5-9', '--dry-run', '--search', 'scale=0.1,1',
                '--work-dir', tmp_path / 'work', cwd=tmp_path).stdout
    assert 'repadapter / digits5-9: picked scale=' in out
    result = json.loads((tmp_path / 'work' / 'repadapter' / 'digits5-9' /
                         'result.json').read_text())
    assert result['data_variant'] == 'standin'
