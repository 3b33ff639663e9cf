# Copyright (c) mmpetl contributors. All rights reserved.
"""Past one process: every method under DDP, and the foldable ones with
AdaptFormer, VPT and E3VA under FSDP on mmengine's FlexibleRunner (2 gloo
ranks on CPU), against their 1-process runs with the same global batch, all
in one launch."""
import copy
import inspect
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmpetl.apis.reparam import build_model, max_relative_difference
from mmpetl.benchmarks.memory import GIANTS
from mmpetl.benchmarks.methods import METHODS
from mmpetl.datasets import write_digits_task
from mmpetl.models.merge import merge_adapters
from mmpetl.registry import MODELS
from tests.support.helpers import (TINY_SEG_SWIN, TINY_SWIN, TINY_VIT,
                                   pretrained_cfg, randomize_trainable)
from tests.support.tools import ROOT

#: Every method, on the tiny ViT except those that need a Swin: Mona on
#: mmpretrain's, E3VA on mmseg's.
ALL_METHODS = dict(
    METHODS, e3va=dict(type='mmpetl.E3VABackbone', rank=4))
SWIN_METHODS = dict(mona='swin', e3va='seg-swin')
#: Methods also resumed from iteration 1 under DDP: prompt tokens, shared
#: tensors, E3VA's no-grad backbone, a plain foldable one.
RESUMED = ('repadapter', 'vpt-deep', 'arc', 'fact-tt', 'e3va')
#: Under FSDP: every foldable method, AdaptFormer, VPT and E3VA.
FSDP_METHODS = ('repadapter', 'arc', 'lora', 'dora', 'ssf', 'bitfit',
                'ln-tuning', 'fact-tt', 'fact-tk', 'adaptformer',
                'vpt-deep', 'e3va')
#: mmengine's FlexibleRunner (it builds the model after the dataloaders:
#: other random initial adapters than the Runner's), on one process...
FLEXIBLE_CONFIG = """
_base_ = ['./{name}.py']
runner_type = 'FlexibleRunner'
"""
#: ...and with FSDP, as docs/en/scaling.md shows it.
FSDP_CONFIG = """
_base_ = ['./{name}-flexible.py']
strategy = dict(
    type='FSDPStrategy',
    state_dict_cfg='full',
    model_wrapper=dict(type='mmpetl.AdapterFullyShardedDataParallel',
                       use_orig_params=True))
"""

#: 2 iterations of SGD on 8 images a step (1 rank x 8 or 2 ranks x 4), no
#: augmentation, no dropout: the two runs see the same global batches, so
#: they differ only by float32 rounding (DDP sums two per-rank means). SGD,
#: not Adam: Adam's first step is ``lr * sign(g)`` for tiny ``g``, which
#: turns rounding noise on a near-zero gradient into a full step.
CONFIG = """
_base_ = 'mmpretrain::_base_/default_runtime.py'
model = dict(
    type='ImageClassifier', backbone={backbone!r}, neck={neck!r},
    head=dict(type='LinearClsHead', num_classes=3, in_channels=32,
              loss=dict(type='CrossEntropyLoss')))
data_preprocessor = dict(num_classes=3, mean=[127.5] * 3, std=[127.5] * 3,
                         to_rgb=True)
train_dataloader = dict(
    batch_size=8, num_workers=0, persistent_workers=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type='CustomDataset', data_root={data!r},
                 ann_file='train.txt',
                 pipeline=[dict(type='LoadImageFromFile'),
                           dict(type='PackInputs')]))
optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.1, momentum=0.9))
train_cfg = dict(by_epoch=False, max_iters=2)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', interval=1, by_epoch=False),
    logger=dict(type='LoggerHook', interval=1))
log_processor = dict(by_epoch=False)
randomness = dict(seed=0)
"""
#: Per-element tolerance of 2 ranks against 1: ``|a - b| <= ATOL + RTOL|b|``.
ATOL, RTOL = 1e-6, 1e-5


def method_configs(root):
    """A config file per method of :data:`ALL_METHODS`, on 'pre-trained'
    tiny backbones and digits images under ``root``."""
    data = root / 'data'
    write_digits_task(str(data), (5, 6, 7), train_fraction=0.25)
    backbones = dict(
        vit=pretrained_cfg(TINY_VIT, root / 'vit.pth', perturb=0.02),
        # 32 px digits: 4x4 tokens in the last stage, padded to the window.
        # No drop path (random masks per rank).
        swin=pretrained_cfg(
            dict(TINY_SWIN, pad_small_map=True, drop_path_rate=0.),
            root / 'swin.pth', perturb=0.02),
        # Two outputs, the head reads the last: E3VA's norm of output 0
        # stays untrained, so DDP must search for unused parameters.
        **{'seg-swin': pretrained_cfg(dict(TINY_SEG_SWIN, drop_path_rate=0.),
                                      root / 'seg-swin.pth', perturb=0.02)})
    configs = {}
    for name, method in ALL_METHODS.items():
        kind = SWIN_METHODS.get(name, 'vit')
        backbone = dict(method, backbone=backbones[kind])
        if 'dropout' in inspect.signature(
                MODELS.get(method['type']).__init__).parameters:
            backbone['dropout'] = 0.
        path = root / f'{name}.py'
        path.write_text(CONFIG.format(
            backbone=backbone, data=str(data),
            neck=None if kind == 'vit' else dict(
                type='GlobalAveragePooling')))
        configs[name] = str(path)
    return configs


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def launch(jobs, path, nproc):
    """Start ``tests/support/train_many.py`` on ``jobs``: one process, or
    ``nproc`` ranks of one torch.distributed.run launch (as
    tools/dist_train.sh starts tools/train.py). Its output goes to
    ``path`` with ``.log``: a pipe that one waits on while the other
    launch runs would fill and stall it."""
    path.write_text(json.dumps(jobs))
    script = osp.join(ROOT, 'tests', 'support', 'train_many.py')
    prefix = [] if nproc == 1 else [
        '-m', 'torch.distributed.run', f'--nproc_per_node={nproc}',
        f'--master_port={free_port()}'
    ]
    env = dict(os.environ, PYTHONPATH=ROOT, OMP_NUM_THREADS='1')
    with open(path.with_suffix('.log'), 'w') as log:
        return subprocess.Popen([sys.executable, *prefix, script, str(path)],
                                cwd=ROOT, env=env, stdout=log,
                                stderr=subprocess.STDOUT)


def state(work_dir, iteration):
    return torch.load(osp.join(work_dir, f'iter_{iteration}.pth'),
                      weights_only=False)['state_dict']


def test_every_method_trains_under_ddp_and_fsdp_as_on_one_process(
        tmp_path):
    configs = method_configs(tmp_path)
    fsdp = {}
    for name in FSDP_METHODS:
        for kind, text in (('flexible', FLEXIBLE_CONFIG),
                           ('fsdp', FSDP_CONFIG)):
            with open(tmp_path / f'{name}-{kind}.py', 'w') as f:
                f.write(text.format(name=name))
        fsdp[name] = str(tmp_path / f'{name}-fsdp.py')
    one = {name: str(tmp_path / 'one' / name) for name in configs}
    two = {name: str(tmp_path / 'ddp' / name) for name in configs}
    sharded = {name: str(tmp_path / 'fsdp' / name) for name in fsdp}
    half = ['--cfg-options', 'train_dataloader.batch_size=4']
    jobs = [['train.py', [configs[n], '--work-dir', two[n], *half]]
            for n in configs]
    jobs += [['train.py', [configs[n], '--work-dir', two[n] + '-resumed',
                           '--resume', osp.join(two[n], 'iter_1.pth'),
                           *half]] for n in RESUMED]
    jobs += [['train.py', [fsdp[n], '--work-dir', sharded[n], *half]]
             for n in fsdp]
    jobs += [['train.py', [fsdp['lora'], '--work-dir',
                           sharded['lora'] + '-resumed', '--resume',
                           osp.join(sharded['lora'], 'iter_1.pth'), *half]]]
    # The FSDP adapter checkpoint folds into a stock one (rank 0).
    merged = str(tmp_path / 'lora-merged.pth')
    jobs += [['reparam.py', [configs['lora'],
                             osp.join(sharded['lora'], 'iter_2.pth'),
                             merged, '--verify', '--verify-shape', '3', '32',
                             '32']]]
    jobs1 = [['train.py', [configs[n], '--work-dir', one[n]]]
             for n in configs]
    jobs1 += [['train.py', [str(tmp_path / f'{n}-flexible.py'), '--work-dir',
                            one[n] + '-flexible']] for n in fsdp]
    runs = [launch(jobs1, tmp_path / 'one.json', 1),
            launch(jobs, tmp_path / 'two.json', 2)]
    for run in runs:
        run.wait(timeout=1800)
    logs = [(tmp_path / f'{n}.log').read_text() for n in ('one', 'two')]
    for run, log in zip(runs, logs):
        assert run.returncode == 0, log[-5000:]
    # Decided by the wrappers: a search for E3VA only (rank 0 logs it).
    assert logs[1].count('DDP find_unused_parameters=False (') == (
        len(configs) + len(RESUMED) - 2)
    assert logs[1].count(
        'DDP find_unused_parameters=True (E3VABackbone: ') == 2
    for name, config in configs.items():
        model = build_model(Config.fromfile(config))
        trainable = {n for n, p in model.named_parameters()
                     if p.requires_grad}
        single = state(one[name], 2)
        runs = [(single, state(two[name], 2))]
        if name in sharded:
            runs.append((state(one[name] + '-flexible', 2),
                         state(sharded[name], 2)))
        moved = 0.
        for key in trainable:
            if key.startswith('backbone.'):
                step = (single[key] - state(one[name], 1)[key]).abs().max()
                moved = max(moved, float(step))
        # The second step moved the adapter 100 times the tolerance or more.
        assert moved > 1e2 * ATOL, (name, moved)
        for reference, trained in runs:
            # Checkpoints hold exactly what trains.
            assert set(trained) == set(reference) == trainable, name
            for key in trainable:
                assert torch.allclose(trained[key], reference[key],
                                      rtol=RTOL, atol=ATOL), (name, key)
    for name, work_dir in [(n, two[n]) for n in RESUMED] + [
            ('lora', sharded['lora'])]:
        resumed = state(work_dir + '-resumed', 2)
        full = state(work_dir, 2)
        assert all(torch.equal(resumed[k], full[k]) for k in full), name
    stock = torch.load(merged, weights_only=False)['state_dict']
    assert not any('lora' in key for key in stock)


# ============================================== bf16 autocast, giant rows
FOLDABLE = ('repadapter', 'arc', 'lora', 'dora', 'ssf', 'bitfit',
            'ln-tuning', 'fact-tt', 'fact-tk')


def test_bf16_autocast_trains_every_method_and_folds_into_float32(tmp_path):
    backbones = dict(
        vit=pretrained_cfg(TINY_VIT, tmp_path / 'vit.pth', perturb=0.02),
        swin=pretrained_cfg(TINY_SEG_SWIN, tmp_path / 'swin.pth',
                            perturb=0.02))
    inputs = torch.randn(2, 3, 32, 32, generator=torch.Generator().
                         manual_seed(0))
    for name, method in ALL_METHODS.items():
        torch.manual_seed(0)
        model = MODELS.build(dict(
            method, backbone=backbones[
                'swin' if name in SWIN_METHODS else 'vit']))
        model.train()
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.SGD(trainable, lr=0.5)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            out = model(inputs)
            loss = sum(t.float().square().mean() for t in (
                out if isinstance(out, (tuple, list)) else [out]))
        assert torch.isfinite(loss), name
        loss.backward()
        for param in trainable:
            assert param.grad is not None and torch.isfinite(
                param.grad).all(), name
        optimizer.step()
        # The weights, what checkpoints hold, stay float32.
        assert all(p.dtype == torch.float32 for p in model.parameters())
        if name not in FOLDABLE:
            continue
        merged = merge_adapters(model)
        assert all(p.dtype == torch.float32 for p in merged.parameters())
        assert max_relative_difference(model, merged, inputs) < 1e-5, name


def giant_at_depth(cfg, depth, shrink=8):
    """``cfg`` (a :data:`GIANTS` row) with ``depth`` layers, on a 2x2
    patch grid, its widths and head count divided by ``shrink`` (the same
    head width, FFN ratio, SwiGLU, layer scale, RoPE, windows)."""
    from mmpretrain.models import VisionTransformer, ViTEVA02, ViTSAM
    cls = dict(VisionTransformer=VisionTransformer, ViTEVA02=ViTEVA02,
               ViTSAM=ViTSAM)[cfg['type'].split('.')[1]]
    arch = dict(cls.arch_zoo[cfg['arch']], num_layers=depth)
    for key in ('embed_dims', 'num_heads', 'feedforward_channels'):
        arch[key] //= shrink
    if 'global_attn_indexes' in arch:
        arch['global_attn_indexes'] = [depth - 1]
    patch = cfg.get('patch_size', 16)
    return dict(cfg, arch=arch, img_size=2 * patch)


@pytest.mark.parametrize('giant', list(GIANTS))
def test_giant_rows_fold_exactly_at_tiny_depth(giant):
    cfg = giant_at_depth(GIANTS[giant], depth=1)
    torch.manual_seed(0)
    stock = MODELS.build(copy.deepcopy(cfg))
    inputs = torch.randn(1, 3, cfg['img_size'], cfg['img_size'])
    folded = 0
    for name in FOLDABLE:
        try:
            model = MODELS.build(dict(METHODS[name],
                                      backbone=copy.deepcopy(stock)))
        except (KeyError, ValueError):
            continue  # the row's documented '-': no site of the kind
        randomize_trainable(model)
        merged = merge_adapters(model)
        assert max_relative_difference(model, merged, inputs) < 1e-4, (
            giant, name)
        folded += 1
    assert folded >= 5, giant


# =================================================== compat: FSDP on CPU
@pytest.fixture
def cpu_group(monkeypatch):
    """A 1-rank gloo group on CPU, as a distributed launch sets it up (with
    CUDA, FSDP would take the GPU instead)."""
    import torch.distributed as dist
    if torch.cuda.is_available():
        pytest.skip('on CPU only: with CUDA, FSDP takes the GPU')
    for key, value in dict(RANK='0', WORLD_SIZE='1', LOCAL_RANK='0',
                           MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(free_port())).items():
        monkeypatch.setenv(key, value)
    dist.init_process_group(backend='gloo')
    yield
    dist.destroy_process_group()


def test_fsdp_strategy_wraps_on_cpu_only_with_the_fix(cpu_group):
    from mmengine._strategy import FSDPStrategy
    from torch.distributed.fsdp import FullyShardedDataParallel

    from mmpetl.utils import compat
    fixed = FSDPStrategy._wrap_model
    assert getattr(fixed, 'runs_on_cpu', False)  # applied at import
    unfixed = fixed.__closure__[0].cell_contents  # mmengine's own
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises((RuntimeError, AssertionError, ValueError)):
        unfixed(FSDPStrategy(), copy.deepcopy(model))
    wrapped = fixed(FSDPStrategy(), model)
    assert isinstance(wrapped, FullyShardedDataParallel)
    assert wrapped.compute_device.type == 'cpu'
    compat.fsdp_on_cpu()  # idempotent
    assert FSDPStrategy._wrap_model is fixed


# ============================ FSDP in one process: the check, the gradients
@pytest.mark.parametrize('name', ['lora', 'ssf', 'e3va'])
def test_fsdp_first_step_check_and_gradient_as_counted(name, cpu_group):
    """Inside FSDP's forward (``use_orig_params=True``) every parameter is a
    view that requires grad; the first-step check must still tell frozen
    from trainable (E3VA: its backbone runs without autograd), a wrapped
    stock module (SSF's norms) must run on FSDP's views, and the gradient
    FSDP1 keeps is one of every parameter of the unit, as
    :meth:`MemoryCount.gradients` counts it."""
    from mmpetl.benchmarks.memory import count_memory
    from mmpetl.engine.distributed import AdapterFullyShardedDataParallel
    backbone = dict(TINY_SEG_SWIN, drop_path_rate=0.) if name == 'e3va' \
        else TINY_VIT
    method = dict(ALL_METHODS[name])
    if 'dropout' in inspect.signature(
            MODELS.get(method['type']).__init__).parameters:
        method['dropout'] = 0.
    size = 56 if name == 'e3va' else 32
    torch.manual_seed(0)
    model = MODELS.build(dict(method, backbone=backbone))
    model.init_weights()
    randomize_trainable(model)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    inputs = torch.randn(2, 3, size, size)
    expected = [o.detach() for o in model(inputs)]
    model.trainable_checked = False
    sharded = AdapterFullyShardedDataParallel(
        model, device_id=torch.device('cpu'), use_orig_params=True)
    outputs = sharded(inputs)
    assert model.trainable_checked
    for output, reference in zip(outputs, expected, strict=True):
        torch.testing.assert_close(output, reference)
    sum(o.sum() for o in outputs).backward()
    flat = sharded._flat_param
    assert flat.grad is not None and flat.grad.numel() >= sum(
        p.numel() for p in model.parameters())
    for n, p in model.named_parameters():
        assert (p.grad is None) == (n in frozen), n
    if name == 'e3va':
        return  # counted for the ViT rows only (the giants' table)
    count = count_memory(method, backbone, batch_size=2)
    params = sum(p.numel() for p in model.parameters())
    assert count.params == params
    assert count.trainable == params - sum(
        p.numel() for n, p in model.named_parameters() if n in frozen)
    assert count.gradients(2) == 4 * params // 2
    assert count.gradients(1) == 4 * count.trainable
