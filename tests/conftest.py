# Copyright (c) mmpetl contributors. All rights reserved.
import os
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from mmpetl.apis.reparam import build_model
from mmpetl.datasets import write_digits_task
from tests.support.helpers import (TINY_DET_SWIN, TINY_SEG_SWIN, TINY_SWIN,
                                   TINY_VIT, pretrained_cfg)
from tests.support.markers import mark_e2e
from tests.support.rows import ROWS
from tests.support.tools import QUICKSTART, QUICKSTART_CONFIG

if os.environ.get('PYTEST_XDIST_WORKER'):
    # One thread per worker, in this process and in the tools it starts:
    # `make test` runs two workers, one per core of the CI machine.
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)


def pytest_collection_modifyitems(config, items):
    mark_e2e(items)


@pytest.fixture
def vit_cfg(tmp_path):
    return pretrained_cfg(TINY_VIT, tmp_path / 'vit.pth')


@pytest.fixture
def swin_cfg(tmp_path):
    return pretrained_cfg(TINY_SWIN, tmp_path / 'swin.pth')


@pytest.fixture
def seg_swin_cfg(tmp_path):
    return pretrained_cfg(TINY_SEG_SWIN, tmp_path / 'seg_swin.pth')


@pytest.fixture
def det_swin_cfg(tmp_path):
    return pretrained_cfg(TINY_DET_SWIN, tmp_path / 'det_swin.pth')


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Each test leaves mmengine's current default scope as it found it.

    ``init_default_scope`` (runners, ``build_model``) makes a new current
    ``DefaultScope`` that outlives the test; a later test that builds with
    unscoped type names would then look them up in another toolbox's
    registry. The current instance is the last one created, so dropping the
    ones a test created restores the previous one.
    """
    from mmengine.registry import DefaultScope
    before = set(DefaultScope._instance_dict)
    yield
    for name in set(DefaultScope._instance_dict) - before:
        del DefaultScope._instance_dict[name]


@pytest.fixture(scope='module')
def row_cfgs(tmp_path_factory):
    """Every backbone row of :data:`tests.support.rows.ROWS`, with a
    perturbed 'pre-trained' checkpoint."""
    root = tmp_path_factory.mktemp('rows')
    return {
        name: pretrained_cfg(cfg, root / f'{name}.pth', perturb=0.02)
        for name, (cfg, _) in ROWS.items()
    }


@pytest.fixture(scope='module')
def quickstart(tmp_path_factory):
    """Tiny digits data, a 'pre-trained' tiny ViT and a config per method."""
    root = tmp_path_factory.mktemp('tools')
    data = root / 'data'
    write_digits_task(str(data), (5, 6, 7), train_fraction=0.25)
    base = Config.fromfile(osp.join(QUICKSTART, '_base_',
                                    'vit-tiny_digits.py'))
    torch.manual_seed(0)
    vit = build_model(Config(dict(default_scope='mmpretrain',
                                  model=base.vit)))
    pretrained = root / 'pretrained.pth'
    # Laid out as a classifier checkpoint, as the pre-training step writes.
    torch.save(
        dict(state_dict={f'backbone.{k}': v
                         for k, v in vit.state_dict().items()}), pretrained)
    configs = {}
    for method in ('repadapter', 'arc', 'linear-probe'):
        path = root / f'{method}.py'
        path.write_text(QUICKSTART_CONFIG.format(
            base=osp.join(QUICKSTART, f'vit-tiny_digits5-9_{method}.py'),
            data=data, pretrained=pretrained))
        configs[method] = str(path)
    return dict(root=root, configs=configs, pretrained=str(pretrained))
