# Copyright (c) mmpetl contributors. All rights reserved.
"""The classification training-cost pieces on a tiny ViT: the forward-only
saved-bytes count equals the full step's, the input-gradient floor runs
the backward through the frozen backbone without weight gradients, and
tools/benchmarks/training.py measures every method in one run."""
import copy
import gc
import json
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmpetl.apis.reparam import build_model
from mmpetl.benchmarks.training_cost import (classification_batch,
                                             make_optim_wrapper,
                                             measure_training_steps,
                                             profile_step, require_input_grad,
                                             saved_bytes_of_forward,
                                             saved_bytes_of_step)
from mmpetl.suites.task_suite import method_folders
from tests.support.helpers import TINY_VIT
from tests.support.tools import ROOT, one_error_line, run_tool


def tiny_classifier(method):
    cfg = Config.fromfile(
        osp.join(ROOT, 'configs', 'vtab', method,
                 f'vit-b16_{method}_cifar.py'))
    if 'backbone' in cfg.model.backbone:
        cfg.model.backbone.backbone = copy.deepcopy(TINY_VIT)
    else:
        cfg.model.backbone = copy.deepcopy(TINY_VIT)
    cfg.model.head.in_channels = TINY_VIT['arch']['embed_dims']
    torch.manual_seed(0)
    return build_model(cfg)


def test_forward_count_equals_step_count():
    model = tiny_classifier('repadapter')
    data = classification_batch(32, 3, 100)
    step = saved_bytes_of_step(model.train(), data, make_optim_wrapper(model))
    assert step > 0
    assert saved_bytes_of_forward(model, data) == step
    # Saved activations grow with the batch.
    assert saved_bytes_of_forward(
        model, classification_batch(32, 6, 100)) > step


def graph_tensors():
    """Live Python tensors that are part of an autograd graph."""
    gc.collect()
    return sum(1 for obj in gc.get_objects()
               if torch.is_tensor(obj) and obj.grad_fn is not None)


def test_forward_count_frees_its_graph():
    # The count runs a forward and no backward; the graph (a GELU's and a
    # softmax's saved outputs among it) must go with the loss, or a large
    # batch's activations stay in memory for the rest of the run.
    model = tiny_classifier('repadapter')
    data = classification_batch(32, 3, 100)
    before = graph_tensors()
    assert saved_bytes_of_forward(model, data) > 0
    assert graph_tensors() == before


def test_input_gradient_floor():
    probe, floor = tiny_classifier('linear-probe'), tiny_classifier(
        'linear-probe')
    handle = require_input_grad(floor.backbone)
    costs = measure_training_steps(
        dict(probe=probe, floor=floor,
             repadapter=tiny_classifier('repadapter')),
        classification_batch(32, 2, 100), rounds=1)
    # The floor keeps what the input gradient needs; an adapter adds its
    # own inputs; the linear probe keeps only the head's input.
    assert costs['probe'].saved < costs['floor'].saved
    assert costs['floor'].saved < costs['repadapter'].saved
    assert costs['floor'].grads == costs['probe'].grads
    # No weight gradient inside the frozen backbone, yet the backward ran
    # through all of it (to the patch embedding's input).
    inputs = []
    floor.backbone.register_forward_pre_hook(
        lambda module, args: inputs.append(args[0]))
    floor.train_step(classification_batch(32, 2, 100),
                     make_optim_wrapper(floor))
    assert all(p.grad is None for p in floor.backbone.parameters())
    assert inputs[0].grad is not None and inputs[0].grad.abs().sum() > 0
    handle.remove()
    assert saved_bytes_of_forward(floor, classification_batch(
        32, 2, 100)) == costs['probe'].saved


def test_profile_separates_the_adapters_own_operators():
    floor, adapted = tiny_classifier('linear-probe'), tiny_classifier(
        'repadapter')
    require_input_grad(floor.backbone)
    data = classification_batch(32, 2, 100)
    tables = [profile_step(m, data, make_optim_wrapper(m))
              for m in (floor, adapted)]
    own = [key for key in tables[1] if key not in tables[0]]
    # The adapters' thin GEMMs (hidden width 8, 9 with the bias unit) are
    # operators the floor does not run; the frozen blocks' are shared.
    hidden = [key for key in own if key.startswith('aten::')
              and (', 8]' in key or ', 9]' in key)]
    assert hidden and sum(tables[1][key] for key in hidden) > 0
    assert any(key.startswith('aten::mm') for key in tables[0])
    assert all(t >= 0 for table in tables for t in table.values())


def test_classification_batch():
    batch = classification_batch(16, 3, 5)
    assert [tuple(x.shape) for x in batch['inputs']] == [(3, 16, 16)] * 3
    assert all(x.dtype == torch.uint8 for x in batch['inputs'])
    labels = [int(s.gt_label) for s in batch['data_samples']]
    assert all(0 <= label < 5 for label in labels)


def test_training_tool_measures_every_method(tmp_path):
    # One run over every method folder of configs/compare (the tiny ViT at
    # 32x32): the table and the JSON cover them all, with the ratios to
    # full fine-tuning and to the frozen floor (the linear probe).
    out = tmp_path / 'costs.json'
    common = ('tools/benchmarks/training.py', '--task', 'cls', '--config-dir',
              'configs/compare', '--prefix', 'vit-tiny', '--config-task',
              'digits5-9', '--size', '32', '--batch-size', '2',
              '--memory-batch-size', '2', '--rounds', '1', '--threads', '1')
    result = run_tool(*common, '--out', str(out))
    figures = json.loads(out.read_text())
    # Memory and step time per method as bar charts next to the JSON.
    assert (tmp_path / 'costs.png').read_bytes()[:4] == b'\x89PNG'
    methods = method_folders(osp.join(ROOT, 'configs', 'compare'))
    assert len(methods) >= 17
    assert sorted(figures) == sorted(methods + ['input-grad floor'])
    full, floor = figures['full-finetune'], figures['linear-probe']
    for name, f in figures.items():
        assert f'\n{name} ' in result.stdout
        assert f['train_memory_rel_full'] == pytest.approx(
            f['train_memory_bytes'] / full['train_memory_bytes'])
        assert f['train_memory_rel_floor'] == pytest.approx(
            f['train_memory_bytes'] / floor['train_memory_bytes'])
        assert f['step_time_rel_full'] == pytest.approx(
            f['step_time_s'] / full['step_time_s'])
        assert f['step_time_rel_floor'] == pytest.approx(
            f['step_time_s'] / floor['step_time_s'])
        if name not in ('linear-probe', 'input-grad floor',
                        'full-finetune'):
            # Something trains in the backbone: its gradients, AdamW state
            # and saved activations come on top of the probe's.
            assert 0 < f['trainable_backbone'] < full['trainable_backbone']
            assert f['train_memory_bytes'] > floor['train_memory_bytes']
    assert floor['trainable_backbone'] == 0
    assert figures['input-grad floor']['train_memory_rel_floor'] > 1

    # A method without a folder: one line naming it, exit 2, no output.
    out.unlink()
    out.with_suffix('.png').unlink()  # the charts beside it
    error = one_error_line(run_tool(*common, '--methods', 'nolora', '--out',
                                    str(out), expect_ok=False))
    assert error == (
        'error: no method folder in configs/compare for nolora (available: '
        + ', '.join(method_folders(osp.join(ROOT, 'configs', 'compare'),
                                   ('linear-probe', 'full-finetune'))) + ')')
    assert not out.exists()
