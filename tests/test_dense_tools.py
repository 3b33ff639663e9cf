# Copyright (c) mmpetl contributors. All rights reserved.
"""The shipped ADE20K UperNet, COCO Cascade Mask R-CNN and Pascal VOC
RetinaNet configs, made tiny, trained a few iterations through
tools/train.py per method, evaluated through tools/test.py; RepAdapter and
ARC checkpoints merged by tools/reparam.py (Mona, which does not fold,
trains and tests only). E3VA in each memory mode trains every dense model
without a graph through the frozen Swin."""
import json
import math
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import DefaultScope

from mmpetl.apis.reparam import build_model
from mmpetl.benchmarks.training_cost import dense_batch, make_optim_wrapper
from tests.support.dense import (TINY_VOC_SWIN, shipped_config,
                                 tiny_cascade_config, tiny_retinanet_config,
                                 tiny_upernet_config, write_ade20k,
                                 write_coco, write_voc)
from tests.support.helpers import TINY_DET_SWIN, TINY_SEG_SWIN, pretrained_cfg
from tests.support.tools import run_tool

TASKS = dict(
    seg=dict(
        tiny=tiny_upernet_config, swin=TINY_SEG_SWIN, data=write_ade20k,
        metric='mIoU', checkpoint='iter_4.pth',
        methods=('e3va', 'repadapter', 'mona', 'full-ft')),
    det=dict(
        tiny=tiny_cascade_config, swin=TINY_DET_SWIN, data=write_coco,
        metric='coco/segm_mAP', checkpoint='epoch_2.pth',
        methods=('e3va', 'repadapter', 'arc', 'mona', 'frozen',
                 'full-ft')),
    voc=dict(
        tiny=tiny_retinanet_config, swin=TINY_VOC_SWIN, data=write_voc,
        metric='pascal_voc/mAP', checkpoint='epoch_2.pth',
        methods=('e3va', 'repadapter', 'frozen', 'full-ft')))
RUNS = [(task, method) for task, spec in TASKS.items()
        for method in spec['methods']]
MERGEABLE = [(task, method) for task, method in RUNS
             if method in ('repadapter', 'arc')]


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp('dense')
    spaces = {}
    for task, spec in TASKS.items():
        data = spec['data'](str(root / f'{task}_data'))
        swin = pretrained_cfg(spec['swin'], root / f'{task}_swin.pth')
        spaces[task] = dict(data=data, swin=swin)
    return dict(root=root, **spaces)



@pytest.fixture(scope='module')
def trained(workspace):
    """Train lazily, once per (task, method)."""
    runs = {}

    def get(task, method):
        if (task, method) in runs:
            return runs[(task, method)]
        spec, space = TASKS[task], workspace[task]
        cfg = spec['tiny'](Config.fromfile(shipped_config(task, method)),
                           space['data'], space['swin'])
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
        norms = [state[k] for k in backbone_keys
                 if k.startswith('backbone.highway_norms.')]
        assert len(norms) == 2 * len(workspace[task]['swin']['out_indices'])
        assert all(norm.abs().sum() > 0 for norm in norms)
    elif method == 'frozen':
        assert not backbone_keys
    else:
        assert backbone_keys and all(
            '.adapter.' in k or k.startswith('backbone.shared_projections.')
            for k in backbone_keys)
    assert any(k.startswith(('decode_head.', 'roi_head.', 'bbox_head.'))
               for k in state)
    assert 0 <= run['metric'] <= 100  # evaluated through tools/test.py


@pytest.mark.parametrize('task,method', MERGEABLE)
def test_reparam_gives_a_stock_checkpoint(task, method, trained, tmp_path):
    run = trained(task, method)
    merged, stock = tmp_path / 'merged.pth', tmp_path / 'stock.py'
    result = run_tool('tools/reparam.py', run['config'], run['checkpoint'],
                      str(merged), '--out-config', str(stock), '--verify')
    assert 'verified' in result.stdout
    assert 'mmpetl' not in stock.read_text()
    state = torch.load(merged, weights_only=False)['state_dict']
    assert not any('adapter' in k for k in state)
    # Not tmp_path itself: the runner's config dump would replace stock.py.
    stock_value = evaluate(str(stock), str(merged), tmp_path / 'test',
                           TASKS[task]['metric'])
    assert abs(run['metric'] - stock_value) <= 0.5


@pytest.mark.parametrize('memory', ['keep', 'recompute'])
@pytest.mark.parametrize('task', list(TASKS))
def test_e3va_trains_without_a_backbone_graph(task, memory, workspace):
    """A training step of each tiny E3VA model: the frozen Swin's forward
    and its stages (also when re-run in the backward) save no activations,
    and no Swin parameter gets a gradient; the highway (which runs the
    Swin's patch merging on its own tokens), neck and heads train."""
    spec, space = TASKS[task], workspace[task]
    cfg = spec['tiny'](Config.fromfile(shipped_config(task, 'e3va')),
                       space['data'], space['swin'])
    cfg.model.backbone.memory = memory
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        model = revert_sync_batchnorm(build_model(cfg))
    model.train()
    swin = model.backbone.backbone
    depth = {'inside': 0}
    for module in [swin, *swin.stages]:
        module.register_forward_pre_hook(
            lambda *_: depth.update(inside=depth['inside'] + 1))
        module.register_forward_hook(
            lambda *_: depth.update(inside=depth['inside'] - 1))
    saved = []

    def pack(tensor):
        if depth['inside']:
            saved.append(tensor.shape)
        return tensor

    graded = set()
    for name, param in model.named_parameters():
        if param.requires_grad:
            param.register_post_accumulate_grad_hook(
                lambda p, name=name: graded.add(name))
    with torch.no_grad():  # open the zero-initialised gates of the highway
        for norm in model.backbone.highway_norms.values():
            norm.weight.fill_(1.0)
    data = dense_batch('seg' if task == 'seg' else 'det', 64, 2,
                       num_classes=3)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model.train_step(data, make_optim_wrapper(model))
    assert saved == []
    assert all(p.grad is None for p in swin.parameters())
    highway = {n for n, p in model.backbone.named_parameters()
               if p.requires_grad}
    assert highway and {f'backbone.{n}' for n in highway} <= graded
    assert any(not n.startswith('backbone.') for n in graded)  # neck, heads
