# Copyright (c) mmpetl contributors. All rights reserved.
"""Each foldable baseline through the tools once: tools/train.py (which
writes the merged checkpoint at the end through ReparamCheckpointHook),
then tools/reparam.py --verify, whose output equals the hook's."""
import pytest
import torch

from tests.support.tools import run_tool, train_quickstart_method

METHODS = ('lora', 'dora', 'ssf', 'bitfit', 'ln-tuning', 'fact-tt',
           'fact-tk')


@pytest.mark.parametrize('method', METHODS)
def test_train_then_reparam_verify(method, quickstart, tmp_path):
    config, work_dir, log = train_quickstart_method(method, quickstart,
                                                    tmp_path)
    out = tmp_path / 'merged.pth'
    result = run_tool('tools/reparam.py', str(config),
                      str(work_dir / 'epoch_1.pth'), str(out), '--verify')
    assert 'verified' in result.stdout, log
    by_tool = torch.load(out, weights_only=False)['state_dict']
    by_hook = torch.load(work_dir / 'epoch_1_merged.pth',
                         weights_only=False)['state_dict']
    assert by_tool.keys() == by_hook.keys()
    assert all(torch.equal(by_tool[k], by_hook[k]) for k in by_tool)
