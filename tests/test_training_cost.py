# Copyright (c) mmpetl contributors. All rights reserved.
"""The training-cost measurement on a tiny UperNet: the order of the methods
and the parameter / gradient / AdamW bytes are what they must be."""
import copy
import os.path as osp

from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm

from mmpetl.apis.reparam import build_model
from mmpetl.benchmarks.training_cost import dense_batch, measure_training_steps
from tests.support.dense import tiny_upernet_config
from tests.support.helpers import TINY_SEG_SWIN
from tests.support.tools import ROOT

CONFIG = osp.join(ROOT, 'configs', 'ade20k',
                  'upernet_swin-b-in22k_{}_8xb2-160k_ade20k-512x512.py')


def tiny_model(method, wrapper=None):
    cfg = Config.fromfile(CONFIG.format(method))
    if wrapper:
        cfg.model.backbone.type = f'mmpetl.{wrapper}'
        cfg.model.backbone.pop('rank', None)
        cfg.model.backbone.pop('memory', None)
    cfg = tiny_upernet_config(cfg, '/nonexistent', copy.deepcopy(
        TINY_SEG_SWIN))
    return revert_sync_batchnorm(build_model(cfg))


def test_costs_order_the_methods():
    models = dict(
        floor=tiny_model('e3va', 'FrozenBackbone'),
        e3va=tiny_model('e3va'),
        repadapter=tiny_model('repadapter'),
        full=tiny_model('full-ft'))
    costs = measure_training_steps(models, dense_batch('seg', 64, 2, 150),
                                   rounds=1)
    for name, model in models.items():
        trainable = sum(p.numel() * 4 for p in model.parameters()
                        if p.requires_grad)
        total = sum(p.numel() * 4 for p in model.parameters())
        assert costs[name].params == total
        assert costs[name].grads == trainable
        assert costs[name].optimizer == 2 * trainable  # AdamW's two moments
        assert costs[name].seconds > 0
    # The frozen backbone saves nothing; E3VA adds only its highway's
    # inputs; an adapter inside the backbone makes it save activations.
    assert costs['floor'].saved < costs['e3va'].saved
    assert costs['e3va'].saved < costs['repadapter'].saved
    assert costs['repadapter'].saved <= costs['full'].saved
    assert costs['full'].memory > costs['e3va'].memory
