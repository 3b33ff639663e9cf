# Copyright (c) mmpetl contributors. All rights reserved.
"""The wrapper owns what trains, what stays frozen and what folds for the
whole run: backbone options (frozen_stages, norm_eval, with_cp, bias-free
linears, out_indices) never freeze, bypass or break an adapter silently;
pre-trained files that do not fill the backbone stop the build; models that
cannot fold are refused in one line."""
import copy

import pytest
import torch
from torch import nn

from mmpetl.apis.reparam import (max_relative_difference,
                                 reparameterize_checkpoint)
from mmpetl.fileio.errors import CheckpointError
from mmpetl.models import (AdaptedModule, AttachSiteError, PETLModule,
                           PretrainedLoadError)
from mmpetl.models.merge import merge_adapters, merge_blockers
from mmpetl.registry import MODELS
from tests.support.helpers import (TINY_DET_SWIN, TINY_SEG_SWIN, TINY_SWIN,
                                   TINY_VIT, pretrained_cfg)
from tests.support.video import TINY_SWIN3D

REPADAPTER = dict(type='mmpetl.RepAdapterBackbone', scale=2.0)


def _build(backbone_cfg, method=REPADAPTER, **kwargs):
    return MODELS.build(
        dict(copy.deepcopy(method), backbone=copy.deepcopy(backbone_cfg),
             **kwargs))


def _petl_params(model):
    return {
        n: p
        for name, m in model.backbone.named_modules()
        if isinstance(m, PETLModule)
        for n, p in m.named_parameters(prefix=name)
    }


def _backward(model, shape):
    out = model(torch.randn(2, *shape))
    tensors = out if isinstance(out, (list, tuple)) else [out]
    sum((t * torch.randn_like(t)).sum() for t in tensors).backward()


@pytest.mark.parametrize('cfg,shape', [
    (dict(TINY_SWIN, frozen_stages=1), (3, 72, 72)),
    (dict(TINY_SEG_SWIN, frozen_stages=1), (3, 72, 72)),
    (dict(TINY_DET_SWIN, frozen_stages=1), (3, 72, 72)),
    (dict(TINY_SWIN3D, frozen_stages=1), (3, 4, 40, 40)),
    (dict(type='mmpretrain.ConvNeXt', arch=dict(depths=[2, 2],
                                                channels=[16, 32]),
          layer_scale_init_value=1.0, out_indices=(0, 1), frozen_stages=1),
     (3, 32, 32)),
])
def test_frozen_stages_never_freeze_adapters(cfg, shape, tmp_path):
    model = _build(pretrained_cfg(cfg, tmp_path / 'b.pth'))
    optim = torch.optim.SGD(model.parameters(), lr=0.1)
    params = _petl_params(model)
    before = {n: p.detach().clone() for n, p in params.items()}
    for _ in range(2):  # the runner puts the model in train mode each epoch
        model.train()
        assert all(p.requires_grad for p in params.values())
        optim.zero_grad()
        _backward(model, shape)
        optim.step()
    moved = [n for n, p in params.items()
             if not torch.equal(p.detach(), before[n])]
    # Every adapter parameter moved, those of the frozen stage 0 included
    # (the up-projections start at zero; the down ones get gradients after).
    stage0 = [n for n in params if '.0.' in n.split('blocks')[0] + '.']
    assert stage0 and set(stage0) <= set(moved)


def test_video_swin_with_cp_adapters_get_gradients(tmp_path):
    cfg = pretrained_cfg(dict(TINY_SWIN3D, with_cp=True), tmp_path / 'v.pth')
    model = _build(cfg)
    model.train()
    _backward(model, (3, 4, 40, 40))
    params = _petl_params(model)
    assert params and all(p.grad is not None for p in params.values())


# A BatchNorm backbone adapted through targets= (LeViT: linears followed by
# batch norms inside attention and MLP).
LEVIT = dict(type='mmpretrain.LeViT', arch='128s', img_size=64,
             out_indices=(2, ))


def test_frozen_batch_norms_keep_their_statistics(tmp_path):
    cfg = pretrained_cfg(LEVIT, tmp_path / 'levit.pth')
    targets = dict(ffn=r'stages\.\d+\.\d+\.block\.linear1\.linear')
    model = _build(cfg, targets=targets)
    bns = {n: m for n, m in model.backbone.named_modules()
           if isinstance(m, nn.modules.batchnorm._BatchNorm)}
    before = {n: m.running_mean.clone() for n, m in bns.items()}
    model.train()
    assert bns and not any(m.training for m in bns.values())
    with torch.no_grad():
        for p in _petl_params(model).values():
            p.add_(0.1)
    model(torch.randn(2, 3, 64, 64))
    assert all(torch.equal(m.running_mean, before[n]) for n, m in bns.items())
    # The adapter checkpoint reloaded on the pre-trained backbone is the
    # trained model exactly.
    fresh = _build(cfg, targets=targets)
    fresh.load_state_dict(model.state_dict())
    inputs = torch.randn(2, 3, 64, 64)
    assert max_relative_difference(model, fresh, inputs) == 0


@pytest.mark.parametrize('cfg,shape', [
    (dict(TINY_VIT, qkv_bias=False), (3, 32, 32)),
    (dict(TINY_SWIN3D, qkv_bias=False), (3, 4, 40, 40)),
])
def test_bias_free_sites_get_shift_free_adapters(cfg, shape, tmp_path):
    model = _build(pretrained_cfg(cfg, tmp_path / 'b.pth'))
    attn = [s for s in model.attach_sites if s.kind == 'attn']
    assert attn and not any(s.shift for s in attn)
    assert all(s.shift for s in model.attach_sites if s.kind == 'ffn')
    with torch.no_grad():
        for p in _petl_params(model).values():
            p.add_(0.1 * torch.randn_like(p))
    model.train()
    _backward(model, shape)  # first-step checks pass
    merged = merge_adapters(model)
    assert max_relative_difference(model, merged, torch.randn(
        2, *shape)) < 1e-5
    assert any('without shift' in row['fold'] for row in model.site_table())


def test_indivisible_groups_is_one_line_naming_the_site(tmp_path):
    cfg = pretrained_cfg(TINY_VIT, tmp_path / 'vit.pth')
    with pytest.raises(ValueError, match=r'site layers\.0\.attn\.qkv.*'
                       r'divisible by groups'):
        _build(cfg, method=dict(REPADAPTER, groups=3))


def test_scale_must_be_a_number(tmp_path):
    cfg = pretrained_cfg(TINY_VIT, tmp_path / 'vit.pth')
    with pytest.raises(TypeError, match="scale must be a number, not '1.0'"):
        _build(cfg, method=dict(REPADAPTER, scale='1.0'))


def test_unreached_adapters_are_refused_at_the_first_step(tmp_path):
    # out_indices=(0,): the second stage's adapters never reach an output.
    cfg = pretrained_cfg(dict(TINY_SWIN, out_indices=(0, )),
                         tmp_path / 's.pth')
    model = _build(cfg)
    model.train()
    with pytest.raises(AttachSiteError, match=r'get no gradient.*stages\.1'):
        model(torch.randn(1, 3, 72, 72))


def test_pretrained_keys_that_do_not_match_stop_the_build(tmp_path):
    cfg = pretrained_cfg(TINY_VIT, tmp_path / 'vit.pth')
    del cfg['init_cfg']['prefix']  # the file's keys start with 'backbone.'
    for method in (REPADAPTER, dict(type='mmpetl.FrozenBackbone')):
        with pytest.raises(PretrainedLoadError,
                           match=r"vit\.pth filled 0 of .*prefix="
                           r"'backbone\.'"):
            _build(cfg, method=method)


def test_dense_swin_new_output_norms_train(tmp_path):
    # A classification checkpoint lacks the dense Swin's per-stage output
    # norms: new layers, which train like the head.
    cfg = pretrained_cfg(TINY_SEG_SWIN, tmp_path / 's.pth')
    state = torch.load(tmp_path / 's.pth')
    state['state_dict'] = {
        k: v for k, v in state['state_dict'].items()
        if not k.startswith(('backbone.norm0.', 'backbone.norm1.'))}
    torch.save(state, tmp_path / 's.pth')
    model = _build(cfg)
    assert sorted(model.trained_new_layers()) == [
        'norm0.bias', 'norm0.weight', 'norm1.bias', 'norm1.weight']
    assert model.backbone.norm1.weight.requires_grad
    # A block's norm1 is no new layer: missing, it stops the build.
    state['state_dict'].pop('backbone.stages.0.blocks.0.norm1.weight')
    torch.save(state, tmp_path / 's.pth')
    with pytest.raises(PretrainedLoadError,
                       match=r'stages\.0\.blocks\.0\.norm1\.weight stay'):
        _build(cfg)


def test_e3va_refuses_to_merge(seg_swin_cfg, tmp_path):
    model = _build(seg_swin_cfg, method=dict(type='mmpetl.E3VABackbone',
                                             rank=4))
    blockers = merge_blockers(model)
    assert len(blockers) == 1 and 'highway' in blockers[0]
    with pytest.raises(ValueError, match='highway'):
        merge_adapters(model)


def test_non_mergeable_site_is_refused(tmp_path):
    cfg = pretrained_cfg(TINY_VIT, tmp_path / 'vit.pth')
    targets = dict(attn=dict(module=r'layers\.\d+\.attn', mergeable=False))
    model = _build(cfg, targets=targets)
    assert merge_blockers(model)[0].startswith('layers.0.attn: ')
    with pytest.raises(ValueError, match='non-mergeable site'):
        merge_adapters(model)


def test_assign_load_repoints_the_wrapped_module(row_cfg_beit):
    model = _build(row_cfg_beit)
    site = next(m for m in model.backbone.modules()
                if isinstance(m, AdaptedModule))
    state = {k: torch.randn_like(v) if v.is_floating_point() else v
             for k, v in site.state_dict().items()}
    site.load_state_dict(state, assign=True)
    assert site.module.qkv is site.qkv
    assert site.module.q_bias is site.q_bias
    assert torch.equal(site.module.q_bias, state['q_bias'])


@pytest.fixture
def row_cfg_beit(tmp_path):
    return pretrained_cfg(
        dict(type='mmpretrain.BEiTViT', arch=dict(
            embed_dims=32, num_layers=2, num_heads=2,
            feedforward_channels=64), img_size=32, patch_size=8),
        tmp_path / 'beit.pth', perturb=0.02)


def test_reparam_refuses_e3va_in_one_line(seg_swin_cfg, tmp_path):
    from mmengine.config import Config
    cfg = Config(dict(model=dict(type='mmpetl.E3VABackbone', rank=4,
                                 backbone=seg_swin_cfg)))
    cfg_path = tmp_path / 'e3va.py'
    cfg.dump(str(cfg_path))
    model = MODELS.build(cfg.model)
    torch.save(dict(state_dict=model.state_dict()), tmp_path / 'e.pth')
    out = tmp_path / 'merged.pth'
    with pytest.raises(CheckpointError, match='cannot be merged.*highway'):
        reparameterize_checkpoint(str(cfg_path), str(tmp_path / 'e.pth'),
                                  str(out))
    assert not out.exists()
