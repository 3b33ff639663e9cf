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

from mmpetl.datasets import (FEWSHOT_SETS, FEWSHOT_SHOTS, FGVC_SETS,
                             VTAB1K_GROUPS, VTAB1K_TASKS, fewshot_set,
                             fgvc_set, write_digits_task,
                             write_lfw_faces_task)
from mmpetl.suites.task_suite import replace_backbone, stock_backbone
from tests.support.tools import run_vtab

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VTAB = osp.join(ROOT, 'configs', 'vtab')
METHODS = ('repadapter', 'arc', 'lora', 'linear-probe', 'full-finetune')
# Every method folder (--methods all): the table's order.
ALL_METHODS = ('full-finetune', 'linear-probe', 'repadapter', 'repattn',
               'arc', 'lora', 'dora', 'ssf', 'bitfit', 'ln-tuning', 'fact-tt',
               'fact-tk', 'adaptformer', 'houlsby', 'pfeiffer', 'convpass',
               'vpt-shallow', 'vpt-deep', 'noah')
# The methods whose model merges into the stock one (merge_blockers empty);
# full fine-tuning and the linear probe are the stock model.
NOT_FOLDING = {'adaptformer', 'houlsby', 'pfeiffer', 'convpass',
               'vpt-shallow', 'vpt-deep', 'noah'}

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


@pytest.mark.parametrize('method', ALL_METHODS)
def test_every_task_config_takes_the_table(method):
    files = sorted(
        glob.glob(osp.join(VTAB, method, f'vit-b16_{method}_*.py')))
    assert [osp.basename(f) for f in files] == sorted(
        f'vit-b16_{method}_{t}.py' for t in VTAB1K_TASKS)
    for task, (classes, scale) in PAPER_TABLE.items():
        cfg = task_config(method, task)
        assert cfg.model.head.num_classes == classes
        # NOAH's configs are its supernet's (train800, val200); its
        # retraining's splits: tests/test_noah.py.
        splits = ('train800', 'val200', 'val200') if method == 'noah' else (
            'train800val200', 'test', 'test')
        for loader, split in zip(('train_dataloader', 'val_dataloader',
                                  'test_dataloader'), splits):
            assert cfg[loader].dataset.type == 'mmpetl.VTAB1k'
            assert cfg[loader].dataset.task == task
            assert cfg[loader].dataset.split == split
        if method == 'repadapter':
            assert cfg.model.backbone.scale == scale
        stock = stock_backbone(cfg.model)
        assert stock.arch == 'b' and stock.patch_size == 16
        # ARC's ViT has no drop-path; RepAdapter's timm ViT has 0.1; SSF's
        # is set per task.
        if method != 'ssf':
            assert stock.drop_path_rate == (0. if method == 'arc' else 0.1)
    assert sorted(os.listdir(VTAB)) == sorted(('_base_', *ALL_METHODS))


def test_fgvc_and_fewshot_configs_name_their_set():
    """configs/fgvc: every VTAB-1k method but the attention-only RepAdapter,
    each with its VTAB-1k model; configs/fewshot: the few-shot tables'
    methods. Each file names its set (and K) and its class count."""
    fgvc = osp.join(ROOT, 'configs', 'fgvc')
    assert sorted(os.listdir(fgvc)) == sorted(
        ('_base_', *(m for m in ALL_METHODS if m not in ('repattn', 'noah'))))
    for method in ALL_METHODS:
        if method in ('repattn', 'noah'):
            continue
        wrapper = task_config(method, 'dtd').model.backbone.type
        for name in FGVC_SETS:
            cfg = Config.fromfile(
                osp.join(fgvc, method, f'vit-b16_{method}_{name}.py'))
            assert cfg.model.backbone.type == wrapper
            assert cfg.model.head.num_classes == fgvc_set(name).num_classes
            assert cfg.train_dataloader.dataset.name == name
            assert cfg.test_dataloader.dataset.split == 'test'
    fewshot = osp.join(ROOT, 'configs', 'fewshot')
    methods = ('linear-probe', 'repadapter', 'lora', 'houlsby', 'vpt-deep')
    assert sorted(os.listdir(fewshot)) == sorted(('_base_', *methods))
    for method in methods:
        files = sorted(os.listdir(osp.join(fewshot, method)))
        assert files == sorted(f'vit-b16_{method}_{n}_{k}shot.py'
                               for n in FEWSHOT_SETS for k in FEWSHOT_SHOTS)
        cfg = Config.fromfile(osp.join(fewshot, method, files[0]))
        name = cfg.train_dataloader.dataset.name
        assert cfg.model.head.num_classes == fewshot_set(name).num_classes
        assert cfg.train_dataloader.dataset.type == 'mmpetl.FewShot'


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


def vit_b16_formulas(task):
    """Each method's trainable backbone parameters at ViT-B/16 (d = 768,
    L = 12 blocks, MLP 4d) by its formula (METHODS.md, BASELINES.md), with
    the task config's own rank / bottleneck / prompt count."""
    d, blocks = 768, 12
    # Output channels of norm1, qkv, proj, norm2, fc1, fc2.
    per_block_channels = d + 3 * d + d + d + 4 * d + d

    def backbone(method):
        return task_config(method, task).model.backbone

    def fact_tt(r):  # shared U, V (d x r); a core r x r per d x d block
        return 2 * d * r + 12 * blocks * r * r

    def fact_tk(r):  # shared U, V, core C (r^3); per-block scalars P
        return 2 * d * r + r**3 + 12 * blocks * r

    def bottleneck(r, sites):  # down (d r + r), up (r d + d) per site
        return sites * blocks * (2 * d * r + r + d)

    lora = blocks * 8 * (d + 3 * d)
    return {
        'full-finetune': 85_798_656,
        'linear-probe': 0,
        # METHODS.md: 221,184 weights, 239,808 with biases; attention only
        # half of it.
        'repadapter': 239_808,
        'repattn': 239_808 // 2,
        'arc': 2 * d * 50 + blocks * 2 * (50 + d),  # 96,432
        'lora': lora,  # 294,912
        'dora': lora + blocks * 3 * d,  # + the magnitude of each qkv row
        'ssf': 2 * (blocks * per_block_channels + d + d),  # 205,824
        'bitfit': blocks * per_block_channels + d + d,  # 102,912
        'ln-tuning': (2 * blocks + 1) * 2 * d,  # 38,400
        'fact-tt': fact_tt(backbone('fact-tt').rank),
        'fact-tk': fact_tk(backbone('fact-tk').rank),
        'adaptformer': bottleneck(backbone('adaptformer').bottleneck, 1),
        'houlsby': bottleneck(backbone('houlsby').bottleneck, 2),
        'pfeiffer': bottleneck(backbone('pfeiffer').bottleneck, 1),
        # 1x1 down, 3x3 r->r conv, 1x1 up, biases; attention and MLP
        'convpass': 2 * blocks * (2 * d * 8 + 9 * 8 * 8 + 2 * 8 + d),
        'vpt-shallow': backbone('vpt-shallow').num_tokens * d,
        'vpt-deep': blocks * backbone('vpt-deep').num_tokens * d,
        # The supernet, every module at its largest dimension (10).
        'noah': blocks * (10 * d + 10 * 4 * d + 2 * 10 * d + 10 + d),
    }


def test_vit_b16_trainable_counts_printed_by_the_tool():
    """--count-params builds every method of --methods all at its real size
    (FacT-TK's dtd rank 16, FacT-TT's 8: the per-task values reach the
    model); each count is its formula's."""
    out = run_vtab('--methods', 'all', '--tasks', 'dtd', '--count-params')
    counts = {
        m.group(1): [int(g.replace(',', '')) for g in m.groups()[1:]]
        for m in re.finditer(
            r'^(\S+) \(dtd\): trainable backbone ([\d,]+) \(matrices '
            r'([\d,]+)\), head ([\d,]+), total trainable ([\d,]+) of '
            r'([\d,]+)$', out, re.M)
    }
    assert list(counts) == list(ALL_METHODS)
    head = 768 * 47 + 47
    formulas = vit_b16_formulas('dtd')
    assert task_config('fact-tk', 'dtd').model.backbone.rank == 16
    for method, (backbone, _, head_count, total_trainable, total) in \
            counts.items():
        assert backbone == formulas[method], method
        assert head_count == head
        assert total_trainable == backbone + head_count
        # Adapters add parameters; parameter selection trains stock ones.
        stock = method in ('full-finetune', 'linear-probe', 'bitfit',
                           'ln-tuning')
        assert total == 85_798_656 + head + (0 if stock else backbone)
    # Weights only (no biases, scales, offsets): RepAdapter 221,184; ARC's
    # shared projections; BitFit, LN-tuning and SSF have none.
    assert counts['repadapter'][1] == 221_184
    assert counts['arc'][1] == 2 * 768 * 50
    assert counts['ssf'][1] == counts['bitfit'][1] == 0
    assert counts['full-finetune'][3] == counts['full-finetune'][4]


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


def test_all_methods_one_table_with_folding_and_costs(tmp_path):
    """--methods all on one task (every method end to end on stand-in
    data) writes one table: per method the accuracy, both means (labelled),
    trainable parameters, whether its trained model folds (asked of the
    model) and the cost ratios a --costs file gives (n/a where it has
    none); a malformed costs file is one line, exit 2, before training."""
    # As tools/benchmarks/training.py --out writes them, and latencies.
    costs = tmp_path / 'costs.json'
    costs.write_text(json.dumps({
        'full-finetune': {'train_memory_rel_full': 1.0,
                          'step_time_rel_full': 1.0,
                          'train_memory_rel_floor': 9.5},
        'lora': {'train_memory_rel_full': 0.41, 'step_time_rel_full': 0.66,
                 'trainable_backbone': 294_912}}))
    latency = tmp_path / 'latency.json'
    latency.write_text(json.dumps({'lora': {'latency_rel_stock': 1.0}}))
    work = tmp_path / 'work'
    out = run_vtab('--methods', 'all', '--tasks', 'dtd', '--dry-run',
                   '--costs', costs, latency, '--work-dir', work)
    rows = {r['method']: r for r in csv.DictReader(open(work /
                                                        'results.csv'))}
    assert list(rows) == list(ALL_METHODS)
    # One line per run; the Runners' environment and config go to their
    # log files; a summary as wide as the terminal (80 without one).
    total = len(ALL_METHODS)
    runs = [line for line in out.splitlines() if line.startswith('run ')]
    assert len(runs) == total
    assert runs[0].startswith(
        f'run 1 of {total}, full-finetune / dtd: top-1')
    assert re.search(r', \d+ s, ETA \d+:\d\d:\d\d$', runs[0])
    assert runs[-1].endswith(', ETA 0:00:00')
    assert 'System environment' not in out and 'Config:' not in out
    log, = glob.glob(str(work / 'lora' / 'dtd' / '*' / '*.log'))
    assert 'System environment' in open(log).read()
    *summary, wrote = out[out.rindex('\nmethod'):].strip().splitlines()
    assert len(summary) == 2 + total and wrote.startswith('wrote ')
    assert max(map(len, summary)) <= int(os.environ.get('COLUMNS', 80))
    for name in ('results.png', 'results_costs.png'):
        assert (work / name).read_bytes()[:4] == b'\x89PNG'
    for method, row in rows.items():
        assert f'{method} / dtd: top-1' in out
        assert row['folds'] == ('no' if method in NOT_FOLDING else 'yes')
        assert row['mean_of_groups'] == row['mean'] == row['dtd']
    assert rows['lora']['train_memory_rel_full'] == '0.41'
    assert rows['lora']['latency_rel_stock'] == '1.0'
    assert rows['full-finetune']['latency_rel_stock'] == ''
    table = (work / 'results.md').read_text().splitlines()
    header = [c.strip() for c in table[0].strip('|').split('|')]
    assert {'mean of group means', 'flat mean', 'folds',
            'train memory / full', 'latency / stock'} <= set(header)
    arc = [c.strip() for c in table[2 + ALL_METHODS.index('arc')].strip(
        '|').split('|')]
    assert arc[header.index('step time / full')] == 'n/a'
    costs.write_text(json.dumps({'lora': {'memory': 0.4}}))
    result = subprocess.run(
        [sys.executable, 'tools/suites/vtab.py', '--methods', 'all',
         '--dry-run', '--costs', str(costs), '--work-dir',
         str(tmp_path / 'bad')], cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "'memory'" in result.stderr and 'costs.json' in result.stderr
    assert not (tmp_path / 'bad').exists()


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
