# Copyright (c) mmpetl contributors. All rights reserved.
import copy

import pytest
import torch
from mmengine.analysis import FlopAnalyzer
from mmengine.config import Config, ConfigDict
from mmengine.registry import DefaultScope

from mmpetl.apis.reparam import (adapter_wrappers_in_config,
                                 max_relative_difference, stock_config)
from mmpetl.models import AdaptedLinear, FrozenBackbone
from mmpetl.models.merge import merge_adapters
from mmpetl.registry import MODELS
from tests.support.helpers import randomize_trainable

METHODS = [
    dict(type='mmpetl.RepAdapterBackbone', scale=5.0),
    dict(type='mmpetl.ARCBackbone', hidden_dim=6),
    dict(type='mmpetl.RepAdapterBackbone', sites='attn'),
]


def _build(method, backbone_cfg):
    return randomize_trainable(
        MODELS.build(dict(method, backbone=copy.deepcopy(backbone_cfg))))


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('backbone,shape', [
    ('vit_cfg', (3, 32, 32)),
    ('swin_cfg', (3, 72, 72)),   # 18x18 and 9x9 tokens: windows pad
    ('swin_cfg', (3, 56, 56)),   # 14x14 and 7x7 tokens: no padding
    ('seg_swin_cfg', (3, 72, 72)),
    ('seg_swin_cfg', (3, 56, 56)),
    ('det_swin_cfg', (3, 72, 72)),
    ('det_swin_cfg', (3, 60, 92)),  # non-square, both sides padded
])
def test_merged_model_matches_adapter_model(method, backbone, shape,
                                            request):
    backbone_cfg = request.getfixturevalue(backbone)
    model = _build(method, backbone_cfg).eval()
    merged = merge_adapters(model)
    assert not any(isinstance(m, (AdaptedLinear, FrozenBackbone))
                   for m in merged.modules())
    inputs = torch.randn(2, *shape)
    assert max_relative_difference(model, merged, inputs) < 1e-5
    # Adapters are not the identity: the check above is not vacuous.
    stock = MODELS.build(ConfigDict(backbone_cfg))
    stock.init_weights()
    assert max_relative_difference(stock, merged, inputs) > 1e-3


@pytest.mark.parametrize('method', METHODS[:2])
def test_merged_model_is_the_stock_model(method, vit_cfg):
    model = _build(method, vit_cfg).eval()
    merged = merge_adapters(model)
    stock = MODELS.build(copy.deepcopy(vit_cfg))
    assert type(merged) is type(stock)
    # Same keys and shapes: loads strictly into the stock backbone.
    stock.load_state_dict(merged.state_dict(), strict=True)
    assert sum(p.numel() for p in merged.parameters()) == sum(
        p.numel() for p in stock.parameters())
    inputs = (torch.randn(1, 3, 32, 32), )
    stock.eval()  # mmpretrain backbones' train() returns None: no chaining
    assert FlopAnalyzer(merged, inputs).total() == FlopAnalyzer(
        stock, inputs).total()
    assert FlopAnalyzer(model, inputs).total() > FlopAnalyzer(
        stock, inputs).total()


def test_merge_inside_a_classifier(vit_cfg):
    # Its data preprocessor's default type is looked up in the default scope.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        classifier = MODELS.build(
            dict(
                type='mmpretrain.ImageClassifier',
                backbone=dict(METHODS[0], backbone=vit_cfg),
                head=dict(type='mmpretrain.LinearClsHead', num_classes=3,
                          in_channels=32)))
    randomize_trainable(classifier).eval()
    inputs = torch.randn(2, 3, 32, 32)
    expected = classifier(inputs, mode='tensor')
    merged = merge_adapters(classifier)
    assert type(merged.backbone).__name__ == 'VisionTransformer'
    torch.testing.assert_close(merged(inputs, mode='tensor'), expected,
                               rtol=1e-5, atol=1e-6)
    # A copy: the classifier keeps its adapters, and computes as before.
    assert isinstance(classifier.backbone, FrozenBackbone)
    assert merged.head is not classifier.head
    torch.testing.assert_close(classifier(inputs, mode='tensor'), expected)
    # In place: the classifier itself is merged.
    assert merge_adapters(classifier, inplace=True) is classifier
    assert type(classifier.backbone).__name__ == 'VisionTransformer'
    torch.testing.assert_close(classifier(inputs, mode='tensor'), expected,
                               rtol=1e-5, atol=1e-6)


def test_merge_keeps_float64_exact(vit_cfg):
    model = _build(METHODS[1], vit_cfg).double().eval()
    merged = merge_adapters(model)
    inputs = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    assert max_relative_difference(model, merged, inputs) < 1e-12


def test_stock_config_removes_wrappers_and_mmpetl_hooks(vit_cfg):
    cfg = Config(
        dict(
            model=dict(
                type='ImageClassifier',
                backbone=dict(type='mmpetl.ARCBackbone', backbone=vit_cfg)),
            custom_hooks=[
                dict(type='mmpetl.ParameterCountHook'),
                dict(type='EMAHook')
            ]))
    assert [c.__name__ for c in adapter_wrappers_in_config(cfg)] == [
        'ARCBackbone'
    ]
    stock = stock_config(cfg)
    assert stock.model.backbone == vit_cfg
    assert stock.custom_hooks == [dict(type='EMAHook')]
    assert adapter_wrappers_in_config(stock) == []
    assert 'mmpetl' not in stock.pretty_text


def test_module_tree_survives_deepcopy(vit_cfg):
    model = _build(METHODS[1], vit_cfg)
    clone = copy.deepcopy(model)
    adapters = [m for m in clone.modules() if hasattr(m, '_projection')]
    owned = {id(p) for p in clone.shared_projections.parameters()}
    assert adapters and all(id(a.projection) in owned for a in adapters)
    qkv = clone.backbone.layers[0].attn.qkv
    assert isinstance(qkv, AdaptedLinear)
    assert qkv is not model.backbone.layers[0].attn.qkv
    # The clone computes the model, through its own shared projection.
    model.eval()
    clone.eval()
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(clone(inputs)[0], model(inputs)[0])
        clone.shared_projections['attn'].weight.add_(1.)
        assert not torch.allclose(clone(inputs)[0], model(inputs)[0])
