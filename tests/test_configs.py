# Copyright (c) mmpetl contributors. All rights reserved.
import glob
import os.path as osp

import pytest
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmpetl.apis.reparam import build_model
from mmpetl.models.stock_checkpoint import stock_config
from mmpetl.engine.hooks import count_parameters

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# configs/vtab and configs/compare (full fine-tuning and LoRA baselines
# among them) are built, trained and merged by tests/test_vtab.py,
# configs/fgvc by tests/test_recipes.py, configs/fewshot by
# tests/test_protocol.py.
SUITES = tuple(osp.join(ROOT, 'configs', d, '')
               for d in ('vtab', 'compare', 'fgvc', 'fewshot'))
CONFIGS = sorted(
    p for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'),
                         recursive=True)
    if '_base_' not in p and not p.startswith(SUITES))


def _without_pretrained(cfg):
    """Pre-trained files are not in the repo: build with random weights.
    Swin backbones get one block per stage: the same widths, attach sites,
    necks and heads (what the wrappers and the toolboxes check), in seconds
    instead of minutes per Swin-L."""
    node = cfg.model.backbone
    while 'backbone' in node:
        node = node.backbone
    node.init_cfg = None
    if 'depths' in node:
        node.depths = [1] * len(node.depths)
    if node.get('pretrained2d'):  # mmaction2's Swin3D inflates a 2D file
        node.pretrained = None
        node.pretrained2d = False
    return cfg


@pytest.mark.parametrize('path', CONFIGS,
                         ids=[osp.relpath(p, ROOT) for p in CONFIGS])
def test_config_builds_and_its_stock_config_too(path):
    cfg = _without_pretrained(Config.fromfile(path))
    # build_model sets the config's default scope: keep it to this test.
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        _check_builds(cfg, path)


def _check_builds(cfg, path):
    model = build_model(cfg)
    counts = count_parameters(model)
    assert 0 < counts['trainable'] <= counts['total']
    stock = build_model(stock_config(cfg))
    assert 'mmpetl' not in type(stock.backbone).__module__
    backbone = count_parameters(model.backbone)
    if 'partial-1' in path:
        # The last block of the last stage, nothing else of the backbone.
        last = model.backbone.backbone.stages[-1].blocks[-1]
        assert backbone['trainable'] == sum(p.numel()
                                            for p in last.parameters())
    elif not any(word in path for word in ('pretrain', 'full-f')):
        # Only adapters (and head, neck) train; the stock model trains all.
        assert backbone['trainable'] < 0.05 * backbone['total']
