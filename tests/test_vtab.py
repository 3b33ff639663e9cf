# Copyright (c) mmpetl contributors. All rights reserved.
"""The VTAB-1k reproduction kit: the task table, every shipped config
(built and trained a few iterations by ``tools/suites/vtab.py --dry-run`` on real
scikit-learn digits in the VTAB-1k layout), resuming, the results table,
and the trainable parameter counts of ViT-B/16 printed by the tool."""
import csv
import glob
import json
import os
import os.path as osp
import re
import socket
import subprocess
import sys

import pytest
from mmengine.config import Config

from mmpetl.datasets import (VTAB1K_GROUPS, VTAB1K_TASKS, write_digits_task,
                             write_lfw_faces_task)
from mmpetl.suites.task_suite import replace_backbone, stock_backbone
from tests.support.tools import run_vtab

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VTAB = osp.join(ROOT, 'configs', 'vtab')
METHODS = ('repadapter', 'arc', 'lora', 'linear-probe', 'full-finetune')

# METHODS.md: class count and RepAdapter's per-task scale, in paper order.
PAPER_TABLE = {
    'cifar': (100, 0.1), 'caltech101': (102, 5), 'dtd': (47, 1),
    'oxford_flowers102': (102, 0.5), 'oxford_iiit_pet': (37, 0.1),
    'svhn': (10, 10), 'sun397': (397, 0.1), 'patch_camelyon': (2, 1),
    'eurosat': (10, 1), 'resisc45': (45, 5), 'diabetic_retinopathy': (5, 0.1),
    'clevr_count': (8, 0.5), 'clevr_dist': (6, 0.1), 'dmlab': (6, 5),
    'kitti': (4, 5), 'dsprites_loc': (16, 5), 'dsprites_ori': (16, 0.1),
    'smallnorb_azi': (18, 10), 'smallnorb_ele': (9, 1),
}



def task_config(method, task):
    return Config.fromfile(
        osp.join(VTAB, method, f'vit-b16_{method}_{task}.py'))


def test_task_table_is_the_papers():
    assert list(VTAB1K_TASKS) == list(PAPER_TABLE)
    for task, (classes, scale) in PAPER_TABLE.items():
        assert VTAB1K_TASKS[task].num_classes == classes
        assert VTAB1K_TASKS[task].repadapter_scale == scale
    groups = [t.group for t in VTAB1K_TASKS.values()]
    assert groups == ['natural'] * 7 + ['specialized'] * 4 + \
        ['structured'] * 8


@pytest.mark.parametrize('method', METHODS)
def test_every_task_config_takes_the_table(method):
    files = sorted(glob.glob(osp.join(VTAB, method, 'vit-b16_*.py')))
    assert [osp.basename(f) for f in files] == sorted(
        f'vit-b16_{method}_{t}.py' for t in VTAB1K_TASKS)
    for task, (classes, scale) in PAPER_TABLE.items():
        cfg = task_config(method, task)
        assert cfg.model.head.num_classes == classes
        for loader, split in (('train_dataloader', 'train800val200'),
                              ('val_dataloader', 'test'),
                              ('test_dataloader', 'test')):
            assert cfg[loader].dataset.type == 'mmpetl.VTAB1k'
            assert cfg[loader].dataset.task == task
            assert cfg[loader].dataset.split == split
        if method == 'repadapter':
            assert cfg.model.backbone.scale == scale
        stock = stock_backbone(cfg.model)
        assert stock.arch == 'b' and stock.patch_size == 16
        # ARC's ViT has no drop-path; RepAdapter's timm ViT has 0.1.
        assert stock.drop_path_rate == (0. if method == 'arc' else 0.1)


def _differences(a, b, prefix=''):
    keys = set(a) | set(b)
    out = set()
    for key in keys:
        if isinstance(a.get(key), dict) and isinstance(b.get(key), dict):
            out |= _differences(a[key], b[key], f'{prefix}{key}.')
        elif a.get(key) != b.get(key):
            out.add(f'{prefix}{key}')
    return out


def test_methods_differ_only_where_the_method_does():
    full = task_config('full-finetune', 'dtd').to_dict()
    expected = {
        'linear-probe': {'model.backbone'},
        'lora': {'model.backbone'},
        'repadapter': {'model.backbone', 'custom_hooks'},
        'arc': {'model.backbone', 'model.head.init_cfg', 'custom_hooks',
                'train_dataloader.batch_size', 'train_dataloader.drop_last',
                'optim_wrapper.optimizer.lr',
                'optim_wrapper.optimizer.weight_decay',
                'optim_wrapper.clip_grad', 'param_scheduler',
                'auto_scale_lr.base_batch_size'},
    }
    for method, allowed in expected.items():
        diff = _differences(task_config(method, 'dtd').to_dict(), full)
        # Nested differences under an allowed key are fine.
        assert {d for d in diff
                if not any(d == a or d.startswith(a + '.')
                           for a in allowed)} == set(), method
    # The shared recipe (RepAdapter paper's).
    assert full['optim_wrapper']['optimizer'] == dict(
        type='AdamW', lr=1e-3, weight_decay=1e-4)
    assert full['train_dataloader']['batch_size'] == 64
    assert full['train_cfg']['max_epochs'] == 100
    assert full['param_scheduler'] == [
        dict(type='mmpetl.TimmCosineLR', T=100, warmup=10, warmup_start=1e-6,
             eta_min=1e-5, lag=1, by_epoch=True)
    ]
    assert full['data_preprocessor']['mean'] == [123.675, 116.28, 103.53]
    resize = full['train_dataloader']['dataset']['pipeline'][1]
    assert resize == dict(type='Resize', scale=(224, 224),
                          interpolation='bicubic', backend='pillow')
    arc = task_config('arc', 'dtd')
    assert arc.optim_wrapper.optimizer.lr == 1e-2
    assert arc.optim_wrapper.optimizer.weight_decay == 0
    assert arc.train_dataloader.batch_size == 32
    assert arc.optim_wrapper.clip_grad.max_norm == 1.0
    assert arc.model.head.init_cfg == dict(type='Constant', layer='Linear',
                                           val=0.)


def test_vit_b16_trainable_counts_printed_by_the_tool():
    out = run_vtab('--methods', *METHODS, '--tasks', 'cifar',
                   '--count-params')
    counts = {
        m.group(1): [int(g.replace(',', '')) for g in m.groups()[1:]]
        for m in re.finditer(
            r'^(\S+) \(cifar\): trainable backbone ([\d,]+) \(matrices '
            r'([\d,]+)\), head ([\d,]+), total trainable ([\d,]+) of '
            r'([\d,]+)$', out, re.M)
    }
    head = 768 * 100 + 100
    # METHODS.md: RepAdapter 221,184 weights, 239,808 with biases; ARC
    # 96,432; LoRA r=8 on qkv 12 x (768 x 8 + 8 x 2304).
    assert counts['repadapter'][:3] == [239_808, 221_184, head]
    assert counts['arc'][:3] == [96_432, 2 * 768 * 50, head]
    assert counts['lora'][:3] == [294_912, 294_912, head]
    assert counts['linear-probe'][:4] == [0, 0, head, head]
    assert counts['full-finetune'][0] == 85_798_656
    assert counts['full-finetune'][3] == counts['full-finetune'][4]
    for method, (backbone, _, head_count, total_trainable, total) in \
            counts.items():
        assert total_trainable == backbone + head_count
        if method not in ('full-finetune', 'linear-probe'):
            assert total == 85_798_656 + head + backbone


@pytest.fixture(scope='module')
def dry_run(tmp_path_factory):
    work = tmp_path_factory.mktemp('vtab')
    out = run_vtab('--methods', *METHODS, '--dry-run', '--work-dir', work)
    return work, out


def test_dry_run_trains_every_shipped_config(dry_run):
    work, out = dry_run
    for method in METHODS:
        for task in VTAB1K_TASKS:
            folder = work / method / task
            result = json.loads((folder / 'result.json').read_text())
            assert 0 <= result['top1'] <= 100
            assert (folder / 'epoch_1.pth').is_file()
            assert f'{method} / {task}: top-1' in out
    # The mergeable methods also wrote their merged (stock) checkpoints.
    assert (work / 'arc' / 'kitti' / 'epoch_1_merged.pth').is_file()
    assert not (work / 'lora' / 'kitti' / 'epoch_1_merged.pth').exists()
    # Adapters trained, the frozen backbone did not.
    repadapter = json.loads(
        (work / 'repadapter' / 'svhn' / 'result.json').read_text())
    probe = json.loads(
        (work / 'linear-probe' / 'svhn' / 'result.json').read_text())
    assert probe['trainable_backbone'] == 0
    assert repadapter['trainable_backbone'] > 0
    assert repadapter['trainable'] - repadapter['trainable_backbone'] == \
        probe['trainable']


def test_results_table_has_group_means(dry_run):
    work, _ = dry_run
    rows = list(csv.DictReader(open(work / 'results.csv')))
    assert [r['method'] for r in rows] == list(METHODS)
    for row in rows:
        per_task = {
            t: json.loads((work / row['method'] / t /
                           'result.json').read_text())['top1']
            for t in VTAB1K_TASKS
        }
        group_means = []
        for group in VTAB1K_GROUPS:
            values = [per_task[t] for t, info in VTAB1K_TASKS.items()
                      if info.group == group]
            group_means.append(sum(values) / len(values))
            assert float(row[group]) == pytest.approx(group_means[-1])
        assert float(row['mean_of_groups']) == pytest.approx(
            sum(group_means) / 3)
        assert float(row['mean']) == pytest.approx(
            sum(per_task.values()) / 19)
        assert row['tasks_done'] == '19/19'
    markdown = (work / 'results.md').read_text().splitlines()
    assert markdown[0].startswith('| method | cifar |')
    assert len(markdown) == 2 + len(METHODS)
    assert (work / 'results.png').read_bytes()[:4] == b'\x89PNG'


def test_finished_tasks_are_skipped_and_interrupted_ones_resume(dry_run):
    work, _ = dry_run
    kitti = work / 'arc' / 'kitti'
    checkpoint = kitti / 'epoch_1.pth'
    stamp = checkpoint.stat().st_mtime_ns
    os.remove(kitti / 'result.json')  # as if interrupted before testing
    out = run_vtab('--methods', 'arc', 'repadapter', '--tasks', 'kitti',
                   'dtd', '--dry-run', '--work-dir', work)
    assert 'arc / dtd: done, skipped' in out
    assert 'repadapter / kitti: done, skipped' in out
    assert 'arc / kitti: top-1' in out  # resumed, then tested
    assert (kitti / 'result.json').is_file()
    assert checkpoint.stat().st_mtime_ns == stamp  # not trained again
    logs = sorted(glob.glob(str(kitti / '*' / '*.log')))
    assert 'Load checkpoint from' in open(logs[-1]).read()


@pytest.mark.parametrize('method', METHODS)
def test_backbone_bases_replace_the_stock_backbone_inside_wrappers(method):
    for name, arch, dims in (('vit-l16', 'l', 1024), ('swin-b', 'base',
                                                      1024)):
        cfg = task_config(method, 'eurosat')
        wrapper = cfg.model.backbone.type
        base = Config.fromfile(
            osp.join(VTAB, '_base_', 'backbones', f'{name}.py'))
        replace_backbone(cfg, base.backbone, base.neck, base.feat_dims)
        if method != 'full-finetune':  # the method's wrapper is kept
            assert cfg.model.backbone.type == wrapper
        assert stock_backbone(cfg.model) == base.backbone
        assert stock_backbone(cfg.model).arch == arch
        assert cfg.model.head.in_channels == dims
        assert cfg.model.neck == base.neck


def test_swin_b_runs_every_method(tmp_path):
    out = run_vtab(
        '--methods', *METHODS, '--tasks', 'eurosat', '--dry-run',
        '--backbone', osp.join(VTAB, '_base_', 'backbones', 'swin-b.py'),
        '--work-dir', tmp_path)
    for method in METHODS:
        assert f'{method} / eurosat: top-1' in out
    log = open(glob.glob(str(tmp_path / 'arc' / 'eurosat' / '*' /
                             '*.log'))[0]).read()
    assert 'on SwinTransformer sites' in log


def test_cpu_comparison_configs_run(tmp_path):
    """configs/compare (`make compare`): each method on both real tasks,
    data where the configs expect it (relative to the working directory)."""
    write_digits_task(str(tmp_path / 'data' / 'quickstart' / 'digits5-9'),
                      (5, 6, 7, 8, 9), train_fraction=0.1)
    write_lfw_faces_task(str(tmp_path / 'data' / 'compare' / 'lfw-faces'))
    out = run_vtab('--config-dir', osp.join(ROOT, 'configs', 'compare'),
                   '--prefix', 'vit-tiny', '--methods', *METHODS, '--tasks',
                   'digits5-9', 'lfw-faces', '--dry-run', '--work-dir',
                   tmp_path / 'work', cwd=tmp_path)
    for method in METHODS:
        for task in ('digits5-9', 'lfw-faces'):
            assert f'{method} / {task}: top-1' in out
    rows = list(csv.DictReader(open(tmp_path / 'work' / 'results.csv')))
    assert [r['method'] for r in rows] == list(METHODS)
    assert 'mean_of_groups' not in rows[0]  # no VTAB groups here
    probe = json.loads((tmp_path / 'work' / 'linear-probe' / 'lfw-faces' /
                        'result.json').read_text())
    # The dry run's tiny ViT (width 32): the head alone trains.
    assert probe['trainable'] == 32 * 2 + 2


def test_distributed_launcher(tmp_path):
    """Two processes (gloo without a GPU) run the tasks in lockstep; rank 0
    reports and writes the table."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    result = subprocess.run(
        [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
         '2', '--master_port', str(port), 'tools/suites/vtab.py', '--launcher',
         'pytorch', '--dry-run', '--methods', 'arc', '--tasks', 'kitti',
         '--work-dir', str(tmp_path)], cwd=ROOT, capture_output=True,
        text=True, env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count('arc / kitti: top-1') == 1
    assert (tmp_path / 'arc' / 'kitti' / 'result.json').is_file()
    assert (tmp_path / 'results.csv').is_file()


def test_unknown_task_is_a_clear_error():
    result = subprocess.run(
        [sys.executable, 'tools/suites/vtab.py', '--tasks', 'imagenet',
         '--dry-run'], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert 'imagenet' in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
