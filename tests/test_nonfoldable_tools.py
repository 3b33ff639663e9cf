# Copyright (c) mmpetl contributors. All rights reserved.
"""Each non-foldable baseline through the tools once: tools/train.py saves
only what trains (no merged checkpoint: they do not fold), and tools/test.py
on that checkpoint reproduces the accuracy the run validated (the checkpoint
reloads to the trained model)."""
import json
import os.path as osp
import re

import pytest
import torch
from mmengine.config import Config

from mmpetl.reparam import build_model
from tests.test_tools import CONFIG, QUICKSTART, run_tool, workspace  # noqa

METHODS = ('adaptformer', 'houlsby', 'pfeiffer', 'convpass', 'vpt-shallow',
           'vpt-deep')


@pytest.mark.parametrize('method', METHODS)
def test_train_then_test_reproduces_validation(method, workspace, tmp_path):  # noqa
    config = tmp_path / f'{method}.py'
    config.write_text(CONFIG.format(
        base=osp.join(QUICKSTART, f'vit-tiny_digits5-9_{method}.py'),
        data=workspace['root'] / 'data',
        pretrained=workspace['pretrained']).replace(
            'max_epochs=2, val_interval=2', 'max_epochs=1, val_interval=1'))
    work_dir = tmp_path / 'work'
    result = run_tool('tools/train.py', str(config), '--work-dir',
                      str(work_dir))
    log = result.stdout + result.stderr
    checkpoint = work_dir / 'epoch_1.pth'
    state = torch.load(checkpoint, weights_only=False)['state_dict']
    model = build_model(Config.fromfile(str(config)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(state) == trainable
    assert not list(work_dir.glob('*merged*'))

    validated = float(re.findall(r'accuracy/top1: ([\d.]+)', log)[-1])
    metrics = tmp_path / 'metrics.json'
    run_tool('tools/test.py', str(config), str(checkpoint), '--work-dir',
             str(tmp_path / 'test'), '--metrics-out', str(metrics))
    tested = json.loads(metrics.read_text())['accuracy/top1']
    assert abs(tested - validated) < 1e-3, log[-3000:]
