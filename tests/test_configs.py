# Copyright (c) mmpetl contributors. All rights reserved.
import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mmpetl.hooks import count_parameters
from mmpetl.reparam import build_model, stock_config

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                         recursive=True) if '_base_' not in p)


def _without_pretrained(cfg):
    """Pre-trained files are not in the repo: build with random weights."""
    node = cfg.model.backbone
    while 'backbone' in node:
        node = node.backbone
    node.init_cfg = None
    return cfg


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_builds_and_its_stock_config_too(path):
    cfg = _without_pretrained(Config.fromfile(path))
    model = build_model(cfg)
    counts = count_parameters(model)
    assert 0 < counts['trainable'] <= counts['total']
    stock = build_model(stock_config(cfg))
    assert 'mmpetl' not in type(stock.backbone).__module__
    if 'pretrain' not in path and 'full-ft' not in path:
        # Only adapters (and head, neck) train; the stock model trains all.
        backbone = count_parameters(model.backbone)
        assert backbone['trainable'] < 0.05 * backbone['total']
