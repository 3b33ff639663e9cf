# Copyright (c) mmpetl contributors. All rights reserved.
import copy
import os

import pytest
import torch

from mmpetl.registry import MODELS
from tests.support.helpers import randomize_trainable


@pytest.mark.parametrize('method', ['RepAdapterBackbone', 'ARCBackbone'])
def test_vit_b16_adapter_checkpoint_is_under_2mb(method, tmp_path):
    classifier = MODELS.build(
        dict(
            type='mmpretrain.ImageClassifier',
            backbone=dict(
                type=f'mmpetl.{method}',
                backbone=dict(type='mmpretrain.VisionTransformer', arch='b')),
            head=dict(type='mmpretrain.LinearClsHead', num_classes=100,
                      in_channels=768)))
    state_dict = classifier.state_dict()
    trainable = {n for n, p in classifier.named_parameters()
                 if p.requires_grad}
    assert set(state_dict) == trainable
    path = tmp_path / 'adapter.pth'
    torch.save(dict(state_dict=state_dict), path)
    assert os.path.getsize(path) < 2 * 1024**2


def test_adapter_state_dict_restores_the_model_exactly(vit_cfg):
    cfg = dict(type='mmpetl.ARCBackbone', backbone=vit_cfg, hidden_dim=4)
    trained = randomize_trainable(MODELS.build(copy.deepcopy(cfg))).eval()
    saved = trained.state_dict()
    assert not any(k.startswith('backbone.') and '.adapter.' not in k
                   for k in saved)
    restored = MODELS.build(copy.deepcopy(cfg)).eval()
    restored.load_state_dict(saved, strict=True)
    inputs = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(restored(inputs), trained(inputs), rtol=0,
                               atol=0)


def test_save_frozen_keeps_the_whole_backbone(vit_cfg):
    model = MODELS.build(dict(type='mmpetl.RepAdapterBackbone',
                              backbone=vit_cfg, save_frozen=True))
    keys = set(model.state_dict())
    assert 'backbone.layers.0.attn.qkv.weight' in keys
    assert 'backbone.layers.0.attn.qkv.adapter.down.weight' in keys


def test_loading_reports_wrong_adapter_keys(vit_cfg):
    model = MODELS.build(dict(type='mmpetl.RepAdapterBackbone',
                              backbone=vit_cfg))
    state = model.state_dict()
    state['backbone.layers.0.attn.qkv.adapter.extra'] = torch.zeros(1)
    del state['backbone.layers.1.ffn.layers.0.0.adapter.up.bias']
    result = model.load_state_dict(state, strict=False)
    assert result.unexpected_keys == [
        'backbone.layers.0.attn.qkv.adapter.extra']
    assert result.missing_keys == [
        'backbone.layers.1.ffn.layers.0.0.adapter.up.bias']
