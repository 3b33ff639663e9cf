# Copyright (c) mmpetl contributors. All rights reserved.
"""The pre-trained load is proved by value, through every toolbox's loader,
on files in the layouts users download (tests/support/published.py): what
loads is accepted, converted files included; what loads nothing or other
shapes is refused in one line."""
import copy
import re

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.runner.checkpoint import _load_checkpoint

from mmpetl.models import FrozenBackbone, PretrainedLoadError
from mmpetl.registry import MODELS
from tests.support.helpers import (TINY_DET_SWIN, TINY_SEG_SWIN, TINY_SWIN,
                                   TINY_VIT)
from tests.support.published import (TINY, converted_vit_npz, official_swin,
                                     timm_vit)
from tests.support.tools import one_error_line, run_tool

#: Every registered wrapper, at options that build on a tiny ViT.
METHODS = [
    dict(type='mmpetl.FrozenBackbone'),
    dict(type='mmpetl.RepAdapterBackbone'),
    dict(type='mmpetl.ARCBackbone', hidden_dim=8),
    dict(type='mmpetl.LoRABackbone'),
    dict(type='mmpetl.LoRABackbone', dora=True),
    dict(type='mmpetl.SSFBackbone'),
    dict(type='mmpetl.BitFitBackbone'),
    dict(type='mmpetl.LNTuningBackbone'),
    dict(type='mmpetl.FacTBackbone', mode='tt', rank=4),
    dict(type='mmpetl.FacTBackbone', mode='tk', rank=4),
    dict(type='mmpetl.AdaptFormerBackbone', bottleneck=4),
    dict(type='mmpetl.HoulsbyAdapterBackbone', bottleneck=4),
    dict(type='mmpetl.PfeifferAdapterBackbone', bottleneck=4),
    dict(type='mmpetl.ConvpassBackbone', dim=4),
    dict(type='mmpetl.VPTBackbone', num_tokens=2, mode='shallow'),
    dict(type='mmpetl.VPTBackbone', num_tokens=2, mode='deep'),
]
#: The wrappers of dense Swins only.
SWIN_METHODS = [
    dict(type='mmpetl.E3VABackbone', rank=4),
    dict(type='mmpetl.MonaBackbone'),
]


def _build(backbone, method=None):
    return MODELS.build(
        ConfigDict(
            dict(method or dict(type='mmpetl.FrozenBackbone'),
                 backbone=copy.deepcopy(backbone))))


def _pretrained(cfg, path, prefix=None):
    init_cfg = dict(type='Pretrained', checkpoint=str(path))
    if prefix:
        init_cfg['prefix'] = prefix
    return dict(copy.deepcopy(cfg), init_cfg=init_cfg)


def _converted_swin(official):
    """The official state dict as mmdet's own converter makes it."""
    from mmdet.models.backbones.swin import swin_converter
    return {
        k[len('backbone.'):]: v
        for k, v in swin_converter(official).items()
    }


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg'])
def test_official_swin_is_loaded_and_proved_by_value(tmp_path, scope):
    # mmdet converts the official file while loading (convert_weights=True;
    # it re-orders the patch-merging channels); mmseg loads the file its
    # swin2mmseg converter writes. Both: every tensor of the file, by value.
    path = tmp_path / 'swin_official.pth'
    official = official_swin(path, **TINY['swin'])
    converted = _converted_swin(official)
    if scope == 'mmdet':
        cfg = _pretrained(dict(TINY_DET_SWIN, convert_weights=True), path)
    else:
        path = tmp_path / 'swin_mmseg.pth'
        torch.save(converted, path)
        cfg = _pretrained(TINY_SEG_SWIN, path)
    model = _build(cfg, dict(type='mmpetl.RepAdapterBackbone'))
    state = model.backbone.state_dict()
    reduction = 'stages.0.downsample.reduction.weight'
    assert not torch.equal(converted[reduction],
                           official['layers.0.downsample.reduction.weight'])
    for key, value in converted.items():
        stock = key.replace('.w_msa.qkv.', '.w_msa.qkv.linear.') \
            .replace('.ffn.layers.0.0.', '.ffn.layers.0.0.linear.')
        if stock in state:
            assert torch.equal(state[stock], value), key
    # The per-output norms are no published layer: new, trained like the
    # head, and nothing else of the stock backbone trains.
    assert set(model.trained_new_layers()) == {
        'norm0.weight', 'norm0.bias', 'norm1.weight', 'norm1.bias'
    }
    stock_trainable = {
        n
        for n, p in model.backbone.named_parameters()
        if p.requires_grad and '.adapter.' not in n
    }
    assert stock_trainable == set(model.trained_new_layers())
    assert 'backbone.norm0.weight' in model.state_dict()  # checkpointed
    assert 'backbone.norm0.weight' not in model.frozen_state_keys()
    # ... and named in the trainable-parameter line.
    from mmpetl.engine.hooks.parameter_count_hook import new_layers_note
    assert new_layers_note(model) == (
        '; new layers (no pre-trained value, trained like the head): 96 in '
        'backbone.norm0.bias, backbone.norm0.weight, backbone.norm1.bias, '
        'backbone.norm1.weight')


def test_e3va_keeps_the_new_norms_at_their_init(tmp_path):
    path = tmp_path / 'swin_official.pth'
    official_swin(path, **TINY['swin'])
    cfg = _pretrained(dict(TINY_DET_SWIN, convert_weights=True), path)
    model = _build(cfg, dict(type='mmpetl.E3VABackbone', rank=4))
    assert model.trained_new_layers() == {}
    assert not model.backbone.norm0.weight.requires_grad


def _other_arch_vit(tmp_path):
    """A zoo file of a ViT with the same key names and other widths."""
    from tests.support.published import model_zoo
    path = tmp_path / 'vit-wider.pth'
    model_zoo(
        path,
        dict(TINY_VIT,
             arch=dict(embed_dims=48,
                       num_layers=2,
                       num_heads=2,
                       feedforward_channels=96)))
    return path


def _cases(tmp_path):
    """(backbone config, what the line must say): files that load nothing
    or other shapes, through each toolbox's loader."""
    vit_file = converted_vit_npz(tmp_path / 'vit.pth', **TINY['vit'])
    whole = tmp_path / 'seg_vit_whole.pth'
    seg_vit = dict(type='mmseg.VisionTransformer',
                   img_size=32,
                   patch_size=8,
                   embed_dims=32,
                   num_layers=2,
                   num_heads=2,
                   mlp_ratio=2)
    from tests.support.published import model_zoo
    model_zoo(whole, seg_vit)  # backbone.* keys: mmseg ignores the prefix
    official = tmp_path / 'swin_official.pth'
    official_swin(official, **TINY['swin'])
    wider_swin = tmp_path / 'swin_wider.pth'
    official_swin(wider_swin, **dict(TINY['swin'], embed_dims=24))
    timm = tmp_path / 'timm_vit.pth'
    timm_vit(timm,
             embed_dims=32,
             num_layers=2,
             mlp_dims=64,
             patch_size=8,
             img_size=32)
    npz = tmp_path / 'vit.pth.npz'
    nested = tmp_path / 'vit_model_nesting.pth'
    model_zoo(nested, TINY_VIT, nesting='model')
    return [
        (_pretrained(TINY_VIT, nested, 'backbone.'),
         r"found nothing to load .*under 'model'.*'state_dict' nesting"),
        (_pretrained(TINY_SWIN, official), r'swin2mmseg.*norm3'),
        (_pretrained(seg_vit, whole, 'backbone.'), r'filled 0 of .*ignores '
         r'prefix='),
        (_pretrained(TINY_VIT, _other_arch_vit(tmp_path), 'backbone.'),
         r"tensor\(s\) of another shape .*\(1, 1, 48\) vs \(1, 1, 32\)"),
        (_pretrained(TINY_VIT, vit_file), r"filled 0 of .*prefix="
         r"'backbone\.'"),
        (_pretrained(TINY_VIT, npz), r"Google's .npz layout"),
        (_pretrained(TINY_VIT, timm, 'backbone.'), r'timm'),
        (_pretrained(dict(TINY_DET_SWIN, convert_weights=True),
                     wider_swin), r'another shape'),
        (_pretrained(TINY_DET_SWIN, official), r'convert_weights=True'),
        (_pretrained(TINY_SEG_SWIN, official), r'convert_weights=True.*'
         r'swin2mmseg'),
        (_pretrained(dict(TINY_SEG_SWIN), wider_swin), r'another shape'),
    ]


def test_files_that_load_nothing_or_other_shapes_are_refused(tmp_path):
    for cfg, message in _cases(tmp_path):
        with pytest.raises(PretrainedLoadError, match=message) as info:
            _build(cfg)
        assert '\n' not in str(info.value)
        assert str(cfg['init_cfg']['checkpoint']) in str(info.value)


def test_every_method_refuses_a_file_of_other_shapes(tmp_path):
    cfg = _pretrained(TINY_VIT, _other_arch_vit(tmp_path), 'backbone.')
    wider_swin = tmp_path / 'swin_wider.pth'
    official_swin(wider_swin, **dict(TINY['swin'], embed_dims=24))
    swin = _pretrained(dict(TINY_DET_SWIN, convert_weights=True), wider_swin)
    for backbone, methods in ((cfg, METHODS),
                              (swin, SWIN_METHODS +
                               [dict(type='mmpetl.LoRABackbone')])):
        for method in methods:
            with pytest.raises(PretrainedLoadError, match='another shape'):
                _build(backbone, method)


def test_pretrained_init_cfg_on_the_wrapper_is_refused(tmp_path):
    path = converted_vit_npz(tmp_path / 'vit.pth', **TINY['vit'])
    with pytest.raises(PretrainedLoadError,
                       match='on the wrapper is not '
                       'applied to the backbone'):
        MODELS.build(
            dict(type='mmpetl.LoRABackbone',
                 backbone=dict(TINY_VIT),
                 init_cfg=dict(type='Pretrained',
                               checkpoint=path,
                               prefix='backbone.backbone.')))


def test_weights_changed_after_the_load_are_refused(tmp_path):
    path = converted_vit_npz(tmp_path / 'vit.pth', **TINY['vit'])
    cfg = _pretrained(TINY_VIT, path, 'backbone.')
    backbone = MODELS.build(ConfigDict(copy.deepcopy(cfg)))
    backbone.init_weights()
    with torch.no_grad():
        backbone.layers[1].attn.qkv.weight.add_(1)
    with pytest.raises(PretrainedLoadError,
                       match=r'layers\.1\.attn\.qkv'
                       r'\.weight differ'):
        FrozenBackbone(backbone)
    # The weights of the file: accepted, as when built from the config.
    fresh = MODELS.build(ConfigDict(copy.deepcopy(cfg)))
    fresh.init_weights()
    assert FrozenBackbone(fresh).new_layers == {}
    state = _load_checkpoint(str(path))['state_dict']
    assert torch.equal(fresh.layers[0].attn.qkv.weight,
                       state['backbone.layers.0.attn.qkv.weight'])


def test_train_refuses_a_file_that_loads_other_shapes(tmp_path):
    """tools/train.py on the quick start's LoRA config with a zoo file of a
    narrower ViT: exit 2, one line, nothing trained or written."""
    from mmpetl.datasets import write_digits_task
    from tests.support.published import model_zoo
    from tests.support.tools import QUICKSTART, QUICKSTART_CONFIG
    write_digits_task(str(tmp_path / 'data'), (5, 6, 7), train_fraction=0.1)
    narrow = tmp_path / 'vit-narrow.pth'
    model_zoo(
        narrow,
        dict(TINY_VIT,
             arch=dict(embed_dims=32,
                       num_layers=4,
                       num_heads=4,
                       feedforward_channels=256),
             img_size=32,
             patch_size=4))
    config = tmp_path / 'lora.py'
    config.write_text(
        QUICKSTART_CONFIG.format(
            base=f'{QUICKSTART}/vit-tiny_digits5-9_lora.py',
            data=tmp_path / 'data',
            pretrained=narrow))
    work_dir = tmp_path / 'work'
    # run_tool puts this checkout's mmpetl first (PYTHONPATH).
    line = one_error_line(
        run_tool('tools/train.py',
                 str(config),
                 '--work-dir',
                 str(work_dir),
                 expect_ok=False))
    assert re.search(
        r'vit-narrow\.pth has \d+ tensor\(s\) of another '
        r'shape than VisionTransformer', line), line
    # Nothing but the log of the build check (no config, no checkpoint).
    written = {p.name for p in work_dir.rglob('*')} if work_dir.exists() \
        else set()
    assert written <= {'checkpoint_check.log'}, written
