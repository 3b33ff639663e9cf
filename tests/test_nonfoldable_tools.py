# Copyright (c) mmpetl contributors. All rights reserved.
"""Each non-foldable baseline through the tools once: tools/train.py saves
only what trains (no merged checkpoint: they do not fold), and tools/test.py
on that checkpoint reproduces the accuracy the run validated (the checkpoint
reloads to the trained model)."""
import json
import re

import pytest

from tests.support.tools import run_tool, train_quickstart_method

METHODS = ('adaptformer', 'houlsby', 'pfeiffer', 'convpass', 'vpt-shallow',
           'vpt-deep')


@pytest.mark.parametrize('method', METHODS)
def test_train_then_test_reproduces_validation(method, quickstart, tmp_path):
    config, work_dir, log = train_quickstart_method(method, quickstart,
                                                    tmp_path)
    checkpoint = work_dir / 'epoch_1.pth'
    assert not list(work_dir.glob('*merged*'))

    validated = float(re.findall(r'accuracy/top1: ([\d.]+)', log)[-1])
    metrics = tmp_path / 'metrics.json'
    run_tool('tools/test.py', str(config), str(checkpoint), '--work-dir',
             str(tmp_path / 'test'), '--metrics-out', str(metrics))
    tested = json.loads(metrics.read_text())['accuracy/top1']
    assert abs(tested - validated) < 1e-3, log[-3000:]
