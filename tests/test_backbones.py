# Copyright (c) mmpetl contributors. All rights reserved.
"""RepAdapter and ARC on every backbone of the attach-site table: every
adapter runs, only adapters train, the merge is exact (also where windows
pad) and gives the stock model; adapters that would not run, or not fold,
are refused before the first optimizer step."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mmpetl.apis.reparam import max_relative_difference
from mmpetl.engine.hooks import count_parameters, site_lines
from mmpetl.models import (AdaptedLinear, AdaptedModule, AffineStandIn,
                           AttachSiteError, FoldTarget, check_sites)
from mmpetl.models.merge import merge_adapters
from mmpetl.models.site_check import fold_error
from mmpetl.registry import MODELS
from tests.support.helpers import pretrained_cfg, randomize_trainable
from tests.support.rows import BACKBONES
from tests.support.video import VIDEO_METHODS


@pytest.fixture(scope='module')
def backbone_cfgs(tmp_path_factory):
    root = tmp_path_factory.mktemp('backbones')
    # Noise makes the biases that init leaves zero (q_bias, ...) non-zero.
    return {
        name: pretrained_cfg(cfg, root / f'{name}.pth', perturb=0.02)
        for name, (cfg, _) in BACKBONES.items()
    }


def _build(method, backbone_cfg, **kwargs):
    return MODELS.build(
        dict(VIDEO_METHODS[method], backbone=copy.deepcopy(backbone_cfg),
             **kwargs))


def _stock(backbone_cfg):
    stock = MODELS.build(copy.deepcopy(backbone_cfg))
    stock.init_weights()
    stock.eval()
    return stock


def _sum_outputs(out):
    tensors = out if isinstance(out, (list, tuple)) else [out]
    return sum((t * torch.randn_like(t)).sum() for t in tensors
               if isinstance(t, torch.Tensor))


@pytest.mark.parametrize('method', sorted(VIDEO_METHODS))
@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_adapters_run_and_only_they_train(name, method, backbone_cfgs):
    model = _build(method, backbone_cfgs[name])
    sites = [m for m in model.backbone.modules()
             if isinstance(m, (AdaptedLinear, AdaptedModule))]
    assert sites and len(sites) == len(model.attach_sites)
    ran = set()
    for site in sites:
        site.adapter.register_forward_hook(
            lambda m, a, o: ran.add(id(m)))
    model.train()
    out = model(torch.randn(2, *BACKBONES[name][1][0]))
    # The site check ran (and passed) on this first training forward.
    assert model.sites_checked
    assert ran == {id(site.adapter) for site in sites}
    _sum_outputs(out).backward()
    for pname, param in model.backbone.named_parameters():
        in_adapter = '.adapter.' in f'.{pname}'
        assert param.requires_grad == in_adapter, pname
        if in_adapter:
            assert param.grad is not None, pname
    for param in getattr(model, 'shared_projections', nn.Module()).parameters():
        assert param.requires_grad and param.grad is not None


@pytest.mark.parametrize('method', sorted(VIDEO_METHODS))
@pytest.mark.parametrize('name', sorted(BACKBONES))
def test_merge_is_exact_and_stock(name, method, backbone_cfgs):
    cfg = backbone_cfgs[name]
    model = randomize_trainable(_build(method, cfg)).eval()
    merged = merge_adapters(model)
    stock = _stock(cfg)
    assert type(merged) is type(stock)
    assert [type(m) for m in merged.modules()] == [
        type(m) for m in stock.modules()]
    state = merged.state_dict()
    assert {k: v.shape for k, v in state.items()} == {
        k: v.shape for k, v in stock.state_dict().items()}
    if name == 'swinv2':
        # Its own load hook drops the index buffers it re-computes (the
        # stock model does not load its own state dict strictly either).
        result = stock.load_state_dict(state, strict=False)
        assert not result.unexpected_keys
        assert all('relative_' in k for k in result.missing_keys)
    else:
        stock.load_state_dict(state, strict=True)
    assert count_parameters(merged)['total'] == count_parameters(
        stock)['total']
    for shape in BACKBONES[name][1]:
        inputs = torch.randn(2, *shape)
        assert max_relative_difference(model, merged, inputs) < 1e-5
        # Adapters are not the identity: the check above is not vacuous.
        assert max_relative_difference(_stock(cfg), merged, inputs) > 1e-3


@pytest.mark.parametrize('name', ['convnext', 'seg_vit', 'swinv2', 'beit'])
def test_site_listing(name, backbone_cfgs):
    model = _build('arc', backbone_cfgs[name])
    lines = site_lines(nn.ModuleDict(dict(backbone=model)))
    assert len(lines) == 1 + len(model.attach_sites)
    text = '\n'.join(lines)
    expected = dict(
        convnext=['ffn_stage0', 'ffn_stage1', 'weight; bias -> bias'],
        seg_vit=['in_proj_weight; bias -> in_proj_bias', 'ffn'],
        swinv2=['attn_stage1', '(adapter without shift)'],
        beit=['qkv.weight; bias -> q_bias | dropped | v_bias'])[name]
    for snippet in expected:
        assert snippet in text, text


def test_convnext_default_sites_are_its_ffn_only(backbone_cfgs):
    model = _build('arc', backbone_cfgs['convnext'])
    assert {s.kind for s in model.attach_sites} == {'ffn'}
    assert sorted(model.shared_projections) == ['ffn_stage0', 'ffn_stage1']
    with pytest.raises(KeyError, match="no site kind\\(s\\) \\['attn'\\]"):
        _build('arc', backbone_cfgs['convnext'], sites='attn')


def test_swinv2_attention_adapters_have_no_shift(backbone_cfgs):
    for method in VIDEO_METHODS:
        model = _build(method, backbone_cfgs['swinv2'])
        for site in model.attach_sites:
            adapter = model.backbone.get_submodule(site.path).adapter
            assert adapter.has_shift == (site.kind == 'ffn')
            assert not any(n.endswith('bias') for n, _ in
                           adapter.named_parameters()) or adapter.has_shift


# Invariance proofs: a bias chunk that a layout drops. The module on
# a(x) (a random affine map with a shift, so its k part W_k m is there)
# against the module folded with that chunk dropped.


@pytest.mark.parametrize('name,path,sink,exact', [
    ('beit', 'layers.0.attn', ('q_bias', None, 'v_bias'), True),
    ('beit', 'layers.0.attn', ('q_bias', 'v_bias', None), False),
    ('beit', 'layers.0.attn', (None, 'q_bias', 'v_bias'), False),
    ('swinv2', 'stages.0.blocks.0.attn.w_msa', ('q_bias', None, 'v_bias'),
     False),
])
def test_key_bias_invariance_per_layout(name, path, sink, exact,
                                        backbone_cfgs):
    """Softmax over keys ignores ``q . b_k`` (the same for every key): BEiT
    drops the k chunk (not q or v). Swin V2's cosine attention normalises
    k first, so a k bias changes the output: its attention adapters take no
    shift."""
    attn = _stock(backbone_cfgs[name]).get_submodule(path)
    d = attn.qkv.weight.shape[1]
    site = AdaptedModule(attn, AffineStandIn(d), FoldTarget('qkv.weight',
                                                            sink))
    # BEiT: 4x4 patches and the class token; Swin V2: a window of 4x4.
    x = torch.randn(3, 17 if name == 'beit' else 16, d)
    error = fold_error(site, (x, ), {})
    if exact:
        assert error < 1e-10
    else:
        assert error > 1e-3


# Adapters that would not run, or not fold, are refused.


def test_swinv2_qkv_linear_target_is_refused(backbone_cfgs):
    """WindowMSAV2 computes F.linear(x, qkv.weight, ...) itself: adapters
    wrapped around qkv never run."""
    targets = dict(
        attn=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.attn\.w_msa\.qkv',
        ffn=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.ffn\.layers\.0\.0')
    model = _build('repadapter', backbone_cfgs['swinv2'], targets=targets)
    model.train()
    with pytest.raises(AttachSiteError) as error:
        model(torch.randn(2, 3, 32, 32))
    message = str(error.value)
    assert '\n' not in message
    assert '4 of 8 adapters never run' in message
    assert 'stages.0.blocks.0.attn.w_msa.qkv' in message
    assert 'bias_sink' in message
    # At build time on request, too.
    with pytest.raises(AttachSiteError, match='never run'):
        _build('arc', backbone_cfgs['swinv2'], targets=targets,
               check_input_shape=(3, 32, 32))


def test_swinv2_dropped_key_bias_is_refused(backbone_cfgs):
    """Naming the enclosing module with a q/v bias sink runs every adapter,
    but a shift's k part cannot be dropped under cosine attention."""
    targets = dict(attn=dict(
        module=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.attn\.w_msa',
        linear='qkv', bias_sink=('q_bias', None, 'v_bias')))
    model = _build('arc', backbone_cfgs['swinv2'], targets=targets)
    model.train()
    with pytest.raises(AttachSiteError, match='folding does not reproduce 4'):
        model(torch.randn(2, 3, 32, 32))
    # Without shift (the table's choice) it runs and folds exactly.
    model = _build('arc', backbone_cfgs['swinv2'], targets=dict(
        attn=dict(targets['attn'], shift=False)))
    errors = model.check_sites(torch.randn(1, 3, 32, 32))
    assert len(errors) == 4 and max(errors.values()) < 1e-10


class _Bypass(nn.Module):
    """A hand-made block that declares ``fc`` but applies its weight
    through ``F.linear`` (optionally adding its input back)."""

    def __init__(self, residual=False):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.residual = residual

    def forward(self, x):
        out = F.linear(x, self.fc.weight, self.fc.bias)
        return out + x if self.residual else out


class _Net(nn.Module):

    def __init__(self, residual=False):
        super().__init__()
        self.norm = nn.LayerNorm(8)
        self.blocks = nn.ModuleList(_Bypass(residual) for _ in range(2))

    def forward(self, x):
        for block in self.blocks:
            x = block(self.norm(x))
        return x


def _wrap_net(targets, residual=False):
    from mmpetl.models import RepAdapterBackbone
    MODELS.register_module(
        '_BypassNet', module=lambda: _Net(residual), force=True)
    return randomize_trainable(
        RepAdapterBackbone(backbone=dict(type='mmpetl._BypassNet'),
                           targets=targets))


def test_hand_made_module_bypassing_its_linear():
    model = _wrap_net(dict(ffn=r'blocks\.\d+\.fc'))
    with pytest.raises(AttachSiteError, match=r'2 of 2 adapters never run'):
        model.train()(torch.randn(4, 5, 8))
    # The enclosing module with the linear to fold into: runs, folds.
    targets = dict(ffn=dict(module=r'blocks\.\d+', linear='fc'))
    model = _wrap_net(targets).train()
    model(torch.randn(4, 5, 8))
    assert model.sites_checked
    merged = merge_adapters(model)
    x = torch.randn(4, 5, 8)
    assert max_relative_difference(model, merged, x) < 1e-5
    # A module that also adds its input back does not fold: refused.
    model = _wrap_net(targets, residual=True)
    with pytest.raises(AttachSiteError, match='folding does not reproduce 2'):
        model.train()(torch.randn(4, 5, 8))
    # A module without an (out, in) weight has nothing to fold into.
    with pytest.raises(TypeError, match=r'not an \(out, in\) linear map'):
        _wrap_net(dict(ffn=dict(module='norm')))


def test_site_check_under_autocast(backbone_cfgs):
    model = _build('repadapter', backbone_cfgs['seg_vit']).train()
    dtypes = []
    model.backbone.layers[0].ffn.layers[0][0].register_forward_hook(
        lambda m, a, out: dtypes.append(out.dtype))
    with torch.autocast('cpu', dtype=torch.bfloat16):
        model(torch.randn(2, 3, 32, 32))
    assert model.sites_checked
    # The site check ran with autocast off; the gradient check and the
    # training forward with it on.
    assert dtypes == [torch.float32, torch.bfloat16, torch.bfloat16]


def test_site_check_leaves_the_rng_as_it_was(backbone_cfgs):
    # A resumed run checks its sites again at its first step: the check
    # must not shift the random stream (dropout, augmentation) it draws.
    model = _build('repadapter', backbone_cfgs['seg_vit']).train()
    inputs = torch.randn(2, 3, 32, 32)
    state = torch.get_rng_state()
    model.check_sites(inputs[:1])
    assert model.sites_checked
    assert torch.equal(torch.get_rng_state(), state)


def test_check_sites_on_a_stock_backbone_is_a_no_op(backbone_cfgs):
    assert check_sites(_stock(backbone_cfgs['beit']),
                       torch.randn(1, 3, 32, 32)) == {}


def test_non_mergeable_site(backbone_cfgs):
    """A reference placement (here: the residual stream before Swin V2's
    FFN norm is the FFN's input) trains and runs, and merging refuses it."""
    targets = dict(ffn=dict(
        module=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.ffn',
        mergeable=False))
    model = randomize_trainable(
        _build('repadapter', backbone_cfgs['swinv2'], targets=targets))
    model.train()(torch.randn(2, 3, 32, 32))
    assert model.sites_checked
    assert 'not mergeable' in '\n'.join(
        site_lines(nn.ModuleDict(dict(b=model))))
    with pytest.raises(ValueError, match='stages.0.blocks.0.ffn: .*non-'
                       'mergeable'):
        merge_adapters(model)


# End to end: a new backbone through tools/train.py and tools/reparam.py.

# test_tools' config with another backbone, a neck and one epoch.
_OVERRIDES = """
model = dict(
    backbone=dict(backbone=dict(_delete_=True, **{backbone})),
    neck=dict(_delete_=True, type='GlobalAveragePooling'),
    head=dict(num_classes=3, in_channels=32))
train_cfg = dict(max_epochs=1, val_interval=1)
"""


def test_swinv2_trains_and_merges_through_the_tools(tmp_path):
    import os.path as osp

    from mmengine.config import Config

    from mmpetl.fileio.checkpoint_io import load_matching_state_dict
    from mmpetl.datasets import write_digits_task
    from mmpetl.apis.reparam import build_model
    from tests.support.tools import QUICKSTART, QUICKSTART_CONFIG, run_tool

    data = tmp_path / 'data'
    write_digits_task(str(data), (5, 6, 7), train_fraction=0.25)
    backbone = pretrained_cfg(
        dict(BACKBONES['swinv2'][0], out_indices=(1, )),
        tmp_path / 'swinv2.pth', perturb=0.02)
    config = tmp_path / 'swinv2_repadapter.py'
    config.write_text(
        QUICKSTART_CONFIG.format(
            base=osp.join(QUICKSTART, 'vit-tiny_digits5-9_repadapter.py'),
            data=data, pretrained=backbone['init_cfg']['checkpoint']) +
        _OVERRIDES.format(backbone=repr(backbone)))
    work_dir = tmp_path / 'work'
    result = run_tool('tools/train.py', str(config), '--work-dir',
                      str(work_dir))
    log = result.stdout + result.stderr
    # The parameter-count hook lists the 8 sites and their fold targets.
    assert 'Adapter sites (8):' in log
    assert 'backbone.backbone.stages.1.blocks.1.attn.w_msa' in log
    checkpoint = work_dir / 'epoch_1.pth'
    out = tmp_path / 'merged.pth'
    result = run_tool('tools/reparam.py', str(config), str(checkpoint),
                      str(out), '--out-config', str(tmp_path / 'stock.py'),
                      '--verify', '--verify-shape', '3', '40', '40')
    assert 'merged 8 adapters' in result.stdout
    assert 'verified' in result.stdout
    # Loads into the stock classifier as tools/test.py checks it (Swin V2's
    # own load hook drops the index buffers it re-computes).
    stock = build_model(Config.fromfile(tmp_path / 'stock.py'))
    state = torch.load(out, weights_only=False)['state_dict']
    load_matching_state_dict(stock, state, str(out))
    assert set(state) == set(stock.state_dict())
    trained = torch.load(checkpoint, weights_only=False)['state_dict']
    assert any('.adapter.' in key for key in trained)


def test_convnext_b_real_size_counts():
    """ConvNeXt-B: 36 FFN sites, widths 128/256/512/1024 (3, 3, 27, 3
    blocks); one ARC projection per stage. The README's figures."""
    from tests.support.rows import arc_params, rep_adapter_params
    stages = [(128, 3), (256, 3), (512, 27), (1024, 3)]
    # No init: only the structure is counted.
    backbone = dict(type='mmpretrain.ConvNeXt', arch='base', init_cfg=None)
    counts = {
        method: count_parameters(
            MODELS.build(dict(type=f'mmpetl.{method}',
                              backbone=backbone)))['trainable']
        for method in ('RepAdapterBackbone', 'ARCBackbone')
    }
    assert counts['RepAdapterBackbone'] == sum(
        n * rep_adapter_params(d) for d, n in stages) == 234_912
    assert counts['ARCBackbone'] == arc_params(stages, hidden=50) == 115_848
