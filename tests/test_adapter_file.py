# Copyright (c) mmpetl contributors. All rights reserved.
"""Adapter files that carry their config, disable_adapters(), unload() and
named adapters, for every method (the benchmark table's, and E3VA)."""
import copy

import pytest
import torch
from mmengine.config import ConfigDict

import mmpetl
from mmpetl.benchmarks.methods import METHODS
from mmpetl.fileio.errors import CheckpointError
from mmpetl.models.adapter_config import ADAPTER_CONFIG_KEY
from mmpetl.registry import MODELS
from tests.support.helpers import (TINY_SEG_SWIN, TINY_SWIN, TINY_VIT,
                                   pretrained_cfg)
from tests.support.helpers import randomize_trainable
from tests.support.rows import stock

#: Method -> (tiny backbone, input shape); Mona adapts the Swin families,
#: E3VA (not in the table: dense prediction only) mmseg's and mmdet's Swin;
#: ARC's reference Swin placement replaces a block's norm2 as well.
CASES = dict({name: (TINY_VIT, (3, 32, 32)) for name in METHODS},
             mona=(TINY_SWIN, (3, 72, 72)),
             e3va=(TINY_SEG_SWIN, (3, 72, 72)),
             arc_reference=(TINY_SWIN, (3, 72, 72)))
WRAPPERS = dict(METHODS, e3va=dict(type='mmpetl.E3VABackbone', rank=4),
                arc_reference=dict(type='mmpetl.ARCBackbone',
                                   swin_ffn_placement='reference'))


def outputs(model, x):
    with torch.no_grad():
        out = model(x)
    return [t.clone() for t in (out if isinstance(out, (tuple, list))
                                else (out, ))]


def assert_same(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert torch.equal(x, y)


def assert_differs(a, b):
    assert any(not torch.allclose(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize('method', sorted(CASES))
def test_adapter_file_disable_unload_named(method, tmp_path):
    backbone_cfg, shape = CASES[method]
    stock_cfg = pretrained_cfg(backbone_cfg, tmp_path / 'pretrained.pth',
                               perturb=0.05)
    trained = randomize_trainable(MODELS.build(ConfigDict(
        WRAPPERS[method], backbone=copy.deepcopy(stock_cfg)))).eval()
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    out = outputs(trained, x)
    reference = stock(stock_cfg)
    reference.eval()  # not chained: mmpretrain's ViT.train() returns None
    stock_out = outputs(reference, x)
    assert_differs(out, stock_out)

    # The file carries the settings; one call rebuilds the trained model.
    path = str(tmp_path / 'adapter.pth')
    torch.save(dict(state_dict=trained.state_dict()), path)
    record = torch.load(path, weights_only=True)['state_dict']._metadata[''][
        ADAPTER_CONFIG_KEY]
    assert record['type'] == WRAPPERS[method]['type']
    assert record['sites'] == trained.adapter_config()['sites']
    loaded = mmpetl.load_adapter(path, copy.deepcopy(stock_cfg)).eval()
    assert type(loaded) is type(trained)
    assert_same(outputs(loaded, x), out)

    # Disabled: the stock backbone's output exactly, and back after.
    with loaded.disable_adapters():
        assert_same(outputs(loaded, x), stock_out)
    assert_same(outputs(loaded, x), out)

    # Two named adapters, each its own output.
    loaded.add_adapter('other')
    loaded.set_adapter('other')
    randomize_trainable(loaded, seed=1)
    other = outputs(loaded, x)
    assert_differs(other, out)
    loaded.set_adapter('default')
    assert_same(outputs(loaded, x), out)
    loaded.set_adapter('other')
    assert_same(outputs(loaded, x), other)
    assert loaded.adapter_names == ['other', 'default']

    # Unloaded: the stock backbone, its keys, its outputs.
    backbone = loaded.unload()
    backbone.eval()
    assert list(backbone.state_dict()) == list(reference.state_dict())
    assert [type(m) for m in backbone.modules()] == \
        [type(m) for m in reference.modules()]
    assert_same(outputs(backbone, x), stock_out)
    assert all(p.requires_grad for p in backbone.parameters())
    with pytest.raises(RuntimeError, match='unloaded'):
        loaded(x)


def test_load_adapter_through_a_config_and_as_a_named_set(tmp_path):
    """A whole classifier's checkpoint: the wrapper under ``backbone.`` is
    rebuilt by a config (``type='mmpetl.load_adapter'``); a second file is
    added to it as a named set."""
    stock_cfg = pretrained_cfg(TINY_VIT, tmp_path / 'pretrained.pth')
    head = dict(type='mmpretrain.LinearClsHead', num_classes=3,
                in_channels=32)

    def classifier(backbone):
        return MODELS.build(ConfigDict(
            type='mmpretrain.ImageClassifier', backbone=backbone, head=head))

    files = []
    for seed in (0, 1):
        model = randomize_trainable(classifier(dict(
            type='mmpetl.LoRABackbone', rank=2, sites=['qkv'],
            backbone=copy.deepcopy(stock_cfg))), seed=seed).eval()
        files.append(str(tmp_path / f'task{seed}.pth'))
        torch.save(dict(state_dict=model.state_dict()), files[-1])
    x = torch.randn(2, 3, 32, 32)
    expected = outputs(model.backbone, x)  # the second task's

    rebuilt = classifier(dict(type='mmpetl.load_adapter', path=files[0],
                              backbone=copy.deepcopy(stock_cfg))).eval()
    assert rebuilt.backbone.adapter_config()['args']['rank'] == 2
    mmpetl.load_adapter(files[1], rebuilt.backbone, adapter_name='task1')
    first = outputs(rebuilt.backbone, x)
    rebuilt.backbone.set_adapter('task1')
    assert_same(outputs(rebuilt.backbone, x), expected)
    assert_differs(first, expected)

    # Another backbone type is refused before anything is built.
    with pytest.raises(CheckpointError, match='trained on a'):
        mmpetl.load_adapter(files[0], dict(TINY_SWIN))


@pytest.mark.parametrize('change,message', [
    (dict(type='mmpretrain.VisionTransformer'), 'not an mmpetl wrapper'),
    (dict(type='mmpetl.ImageClassifier'), 'not a registered mmpetl wrapper'),
    (dict(args=dict(rank=2, code='import os')), "takes no argument 'code'"),
    (dict(args=dict(rank=b'2')), 'not plain data'),
])
def test_load_adapter_refuses_a_record_that_is_not_data(
        tmp_path, change, message):
    """The record comes from an untrusted file: only registered mmpetl
    wrappers, only their own arguments, only plain data."""
    stock_cfg = pretrained_cfg(TINY_VIT, tmp_path / 'pretrained.pth')
    wrapper = MODELS.build(ConfigDict(type='mmpetl.LoRABackbone', rank=2,
                                      backbone=copy.deepcopy(stock_cfg)))
    state = wrapper.state_dict()
    state._metadata[''][ADAPTER_CONFIG_KEY].update(change)
    path = str(tmp_path / 'crafted.pth')
    torch.save(dict(state_dict=state), path)
    with pytest.raises(CheckpointError, match=message) as error:
        mmpetl.load_adapter(path, copy.deepcopy(stock_cfg))
    assert '\n' not in str(error.value)
