# Copyright (c) mmpetl contributors. All rights reserved.
"""The shipped ADE20K UperNet and COCO Cascade Mask R-CNN configs, made
tiny, trained a few iterations through tools/train.py per method, evaluated
through tools/test.py; RepAdapter checkpoints merged by tools/reparam.py."""
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from tests.dense_helpers import (tiny_cascade_config, tiny_upernet_config,
                                 write_ade20k, write_coco)
from tests.helpers import TINY_DET_SWIN, TINY_SEG_SWIN, pretrained_cfg
from tests.test_tools import ROOT, run_tool

TASKS = dict(
    seg=dict(
        config='configs/ade20k/upernet_swin-b-in22k_{}_8xb2-160k_'
        'ade20k-512x512.py',
        tiny=tiny_upernet_config, swin=TINY_SEG_SWIN, data=write_ade20k,
        metric='mIoU', checkpoint='iter_4.pth'),
    det=dict(
        config='configs/coco/cascade-mask-rcnn_swin-b-in22k_{}_fpn_ms-3x_'
        'coco.py',
        tiny=tiny_cascade_config, swin=TINY_DET_SWIN, data=write_coco,
        metric='coco/segm_mAP', checkpoint='epoch_2.pth'))
METHODS = ('e3va', 'repadapter', 'full-ft')
RUNS = [(task, method) for task in TASKS for method in METHODS]


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('dense')
    spaces = {}
    for task, spec in TASKS.items():
        data = spec['data'](str(root / f'{task}_data'))
        swin = pretrained_cfg(spec['swin'], root / f'{task}_swin.pth')
        spaces[task] = dict(data=data, swin=swin)
    return dict(root=root, **spaces)


def shipped_config(task, method):
    spec = TASKS[task]
    path = osp.join(ROOT, spec['config'].format(method))
    if osp.exists(path):
        return path
    # No COCO RepAdapter config ships: the E3VA one with the other wrapper.
    cfg = Config.fromfile(osp.join(ROOT, spec['config'].format('e3va')))
    cfg.model.backbone.type = 'mmpetl.RepAdapterBackbone'
    return cfg


@pytest.fixture(scope='module')
def trained(workspace):
    """Train lazily, once per (task, method)."""
    runs = {}

    def get(task, method):
        if (task, method) in runs:
            return runs[(task, method)]
        spec, space = TASKS[task], workspace[task]
        source = shipped_config(task, method)
        if isinstance(source, str):
            source = Config.fromfile(source)
        cfg = spec['tiny'](source, space['data'], space['swin'])
        config = workspace['root'] / f'{task}_{method}.py'
        cfg.dump(str(config))
        work_dir = workspace['root'] / f'work_{task}_{method}'
        result = run_tool('tools/train.py', str(config), '--work-dir',
                          str(work_dir))
        checkpoint = str(work_dir / spec['checkpoint'])
        runs[(task, method)] = dict(
            config=str(config), work_dir=work_dir, checkpoint=checkpoint,
            log=result.stdout + result.stderr,
            metric=evaluate(str(config), checkpoint, work_dir / 'test',
                            spec['metric']))
        return runs[(task, method)]

    return get


def evaluate(config, checkpoint, work_dir, metric):
    """``metric`` as tools/test.py writes it."""
    out = osp.join(work_dir, 'metrics.json')
    run_tool('tools/test.py', config, checkpoint, '--work-dir', str(work_dir),
             '--metrics-out', out)
    value = json.loads(open(out).read())[metric]
    assert math.isfinite(value) and 0 <= value <= 100
    return value


@pytest.mark.parametrize('task,method', RUNS)
def test_train_and_test(task, method, trained, workspace, tmp_path):
    run = trained(task, method)
    assert 'Trainable parameters:' in run['log']
    state = torch.load(run['checkpoint'], weights_only=False)['state_dict']
    pretrained = torch.load(workspace[task]['swin']['init_cfg'][
        'checkpoint'], weights_only=False)['state_dict']
    backbone_keys = {k for k in state if k.startswith('backbone.')}
    if method == 'full-ft':
        assert backbone_keys == set(pretrained)
        assert any(not torch.equal(state[k], pretrained[k])
                   for k in backbone_keys)
    elif method == 'e3va':
        # Only the highway; its output norms left zero (they train).
        assert backbone_keys and all(
            k.startswith(('backbone.highway.', 'backbone.highway_norms.'))
            for k in backbone_keys)
        assert state['backbone.highway_norms.stage0.weight'].abs().sum() > 0
    else:
        assert backbone_keys and all('.adapter.' in k for k in backbone_keys)
    assert any(k.startswith(('decode_head.', 'roi_head.')) for k in state)
    assert 0 <= run['metric'] <= 100  # evaluated through tools/test.py


@pytest.mark.parametrize('task', list(TASKS))
def test_reparam_gives_a_stock_checkpoint(task, trained, tmp_path):
    run = trained(task, 'repadapter')
    merged, stock = tmp_path / 'merged.pth', tmp_path / 'stock.py'
    result = run_tool('tools/reparam.py', run['config'], run['checkpoint'],
                      str(merged), '--out-config', str(stock), '--verify')
    assert 'verified' in result.stdout
    assert 'mmpetl' not in stock.read_text()
    state = torch.load(merged, weights_only=False)['state_dict']
    assert not any('adapter' in k for k in state)
    stock_value = evaluate(str(stock), str(merged), tmp_path,
                           TASKS[task]['metric'])
    assert abs(run['metric'] - stock_value) <= 0.5
