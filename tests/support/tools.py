# Copyright (c) mmpetl contributors. All rights reserved.
"""Running the repository's tools from tests: paths, a subprocess runner,
the quickstart config template and one quickstart training run."""
import hashlib
import os
import os.path as osp
import subprocess
import sys

import torch
from mmengine.config import Config

from mmpetl.apis.reparam import build_model

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(ROOT, 'configs', 'quickstart')

#: A quickstart config on the test's data and 'pre-trained' tiny ViT.
QUICKSTART_CONFIG = """
_base_ = ['{base}']
data_root = '{data}'
train_dataloader = dict(
    batch_size=16, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
val_dataloader = dict(
    batch_size=64, num_workers=0, persistent_workers=False,
    dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
model = dict(
    backbone=dict(backbone=dict(init_cfg=dict(checkpoint='{pretrained}'))),
    head=dict(num_classes=3))
data_preprocessor = dict(num_classes=3)
train_cfg = dict(max_epochs=2, val_interval=2)
default_hooks = dict(checkpoint=dict(interval=1),
                     logger=dict(interval=1))
param_scheduler = []
"""


def run_tool(*args, expect_ok=True, env=None):
    # The checkout's mmpetl, whichever one the environment installed.
    env = {**os.environ, 'PYTHONPATH': os.pathsep.join(
        [ROOT, os.environ.get('PYTHONPATH', '')]), **(env or {})}
    result = subprocess.run([sys.executable, *args], cwd=ROOT,
                            capture_output=True, text=True, env=env)
    if expect_ok:
        assert result.returncode == 0, result.stdout[-3000:] + \
            result.stderr[-3000:]
    return result


def one_error_line(result):
    """The tool exited 2 with exactly one ``error:`` line; returns it."""
    assert result.returncode == 2, result.stdout[-2000:] + \
        result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines()
              if line.startswith('error:')]
    assert len(errors) == 1, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    return errors[0]


def train_quickstart_method(method, workspace, tmp_path):
    """One epoch of ``configs/quickstart/vit-tiny_digits5-9_<method>.py``
    through tools/train.py on the workspace's data; checks that the
    checkpoint holds exactly what trains. Returns the config path, the
    work dir and the tool's output."""
    config = tmp_path / f'{method}.py'
    config.write_text(QUICKSTART_CONFIG.format(
        base=osp.join(QUICKSTART, f'vit-tiny_digits5-9_{method}.py'),
        data=workspace['root'] / 'data',
        pretrained=workspace['pretrained']).replace(
            'max_epochs=2, val_interval=2', 'max_epochs=1, val_interval=1'))
    work_dir = tmp_path / 'work'
    result = run_tool('tools/train.py', str(config), '--work-dir',
                      str(work_dir))
    state = torch.load(work_dir / 'epoch_1.pth',
                       weights_only=False)['state_dict']
    model = build_model(Config.fromfile(str(config)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(state) == trainable
    return config, work_dir, result.stdout + result.stderr


def sha256(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def run_vtab(*args, cwd=ROOT):
    env = dict(os.environ,
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get(
                   'PYTHONPATH', '')]))
    result = subprocess.run(
        [sys.executable, osp.join(ROOT, 'tools', 'suites', 'vtab.py'),
         *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + \
        result.stderr[-3000:]
    return result.stdout
