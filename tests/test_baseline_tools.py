# Copyright (c) mmpetl contributors. All rights reserved.
"""Each foldable baseline through the tools once: tools/train.py (which
writes the merged checkpoint at the end through ReparamCheckpointHook),
then tools/reparam.py --verify, whose output equals the hook's."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmpetl.reparam import build_model
from tests.test_tools import CONFIG, QUICKSTART, run_tool, workspace  # noqa

METHODS = ('lora', 'dora', 'ssf', 'bitfit', 'ln-tuning', 'fact-tt',
           'fact-tk')


@pytest.mark.parametrize('method', METHODS)
def test_train_then_reparam_verify(method, workspace, tmp_path):  # noqa
    config = tmp_path / f'{method}.py'
    config.write_text(CONFIG.format(
        base=osp.join(QUICKSTART, f'vit-tiny_digits5-9_{method}.py'),
        data=workspace['root'] / 'data',
        pretrained=workspace['pretrained']).replace(
            'max_epochs=2, val_interval=2', 'max_epochs=1, val_interval=1'))
    work_dir = tmp_path / 'work'
    log = run_tool('tools/train.py', str(config), '--work-dir',
                   str(work_dir)).stdout
    checkpoint = torch.load(work_dir / 'epoch_1.pth', weights_only=False)
    model = build_model(Config.fromfile(str(config)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(checkpoint['state_dict']) == trainable

    out = tmp_path / 'merged.pth'
    result = run_tool('tools/reparam.py', str(config),
                      str(work_dir / 'epoch_1.pth'), str(out), '--verify')
    assert 'verified' in result.stdout, log
    by_tool = torch.load(out, weights_only=False)['state_dict']
    by_hook = torch.load(work_dir / 'epoch_1_merged.pth',
                         weights_only=False)['state_dict']
    assert by_tool.keys() == by_hook.keys()
    assert all(torch.equal(by_tool[k], by_hook[k]) for k in by_tool)
