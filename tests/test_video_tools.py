# Copyright (c) mmpetl contributors. All rights reserved.
"""Video recognition through the tools: train (a few iterations), merge with
tools/reparam.py --verify, test the merged stock checkpoint with the stock
config; VideoMAE ViT and Video Swin, RepAdapter and ARC, on real frames
(camera moves over scikit-image's photos, mmaction2's rawframe format)."""
import json
import re

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmpetl.apis.reparam import build_model
from mmpetl.datasets import write_motion_task
from mmpetl.engine.hooks import count_parameters
from tests.support.video import (TINY_SWIN3D, TINY_VIDEO_VIT,
                                 VIDEO_TOOL_CONFIG, video_pretrained_cfg)
from tests.support.tools import run_tool


BACKBONES = dict(
    # frames are 32x32: ViT at its native size; Swin at 32x32 gives 8x8 and
    # 4x4 token maps, padded to 9x9 and 6x6 windows of 3x3.
    vit=dict(cfg=TINY_VIDEO_VIT, head='TimeSformerHead', size=32),
    swin3d=dict(cfg=TINY_SWIN3D, head='I3DHead', size=32))
METHODS = dict(
    RepAdapterBackbone='scale=1.0', ARCBackbone='hidden_dim=8')


@pytest.fixture(autouse=True)
def mmaction_scope():
    """build_model sets the default scope: keep it to these tests."""
    with DefaultScope.overwrite_default_scope('mmaction'):
        yield


@pytest.fixture(scope='module')
def motion_data(tmp_path_factory):
    root = tmp_path_factory.mktemp('motion')
    counts = write_motion_task(str(root))
    assert counts == dict(train=36, test=18)
    return root


@pytest.mark.parametrize('method', sorted(METHODS))
@pytest.mark.parametrize('backbone', sorted(BACKBONES))
def test_video_train_merge_test(backbone, method, motion_data, tmp_path):
    spec = BACKBONES[backbone]
    pretrained = video_pretrained_cfg(spec['cfg'], tmp_path / 'pre.pth')
    config = tmp_path / 'adapter.py'
    config.write_text(
        VIDEO_TOOL_CONFIG.format(
            data=motion_data, method=method, backbone=pretrained,
            options=METHODS[method], head=spec['head'], size=spec['size']))
    work_dir = tmp_path / 'work'
    result = run_tool('tools/train.py', str(config), '--work-dir',
                      str(work_dir))
    log = result.stdout + result.stderr

    # Only adapters and head trained, as counted and printed at the start.
    model = build_model(Config.fromfile(config))
    counts = count_parameters(model)
    assert f'Trainable parameters: {counts["trainable"]:,} / ' \
        f'{counts["total"]:,}' in log
    head = sum(p.numel() for p in model.cls_head.parameters())
    assert counts['trainable'] - head == sum(
        p.numel() for n, p in model.backbone.named_parameters()
        if '.adapter.' in n or n.startswith('shared_projections.'))
    checkpoint = torch.load(work_dir / 'epoch_1.pth', weights_only=False)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(checkpoint['state_dict']) == trainable
    # The adapters moved away from the identity (they got gradients).
    moved = [v for k, v in checkpoint['state_dict'].items()
             if k.endswith('adapter.bias') or k.endswith('up.bias')]
    assert moved and all(v.abs().max() > 0 for v in moved)
    val_top1 = float(re.findall(r'acc/top1: ([0-9.]+)', log)[-1])

    merged, stock_cfg = tmp_path / 'merged.pth', tmp_path / 'stock.py'
    result = run_tool('tools/reparam.py', str(config),
                      str(work_dir / 'epoch_1.pth'), str(merged),
                      '--out-config', str(stock_cfg), '--verify')
    assert 'verified' in result.stdout
    assert 'mmpetl' not in stock_cfg.read_text()
    stock = build_model(Config.fromfile(stock_cfg))
    stock.load_state_dict(
        torch.load(merged, weights_only=False)['state_dict'], strict=True)
    assert sum(p.numel() for p in stock.parameters()) == \
        counts['total'] - counts['trainable'] + head

    # The end-of-training hook wrote the same stock checkpoint and config.
    hook_stock = build_model(
        Config.fromfile(work_dir / 'epoch_1_merged_config.py'))
    hook_state = torch.load(work_dir / 'epoch_1_merged.pth',
                            weights_only=False)['state_dict']
    hook_stock.load_state_dict(hook_state, strict=True)
    for key, value in stock.state_dict().items():
        torch.testing.assert_close(hook_state[key], value)

    metrics_out = tmp_path / 'metrics.json'
    run_tool('tools/test.py', str(stock_cfg), str(merged), '--work-dir',
             str(tmp_path / 'test'), '--metrics-out', str(metrics_out))
    merged_top1 = json.loads(metrics_out.read_text())['acc/top1']
    # The merged stock model scores as the adapter model did (up to one
    # clip flipped by float rounding).
    assert abs(merged_top1 - val_top1) <= 1 / 18 + 1e-4
