# Copyright (c) mmpetl contributors. All rights reserved.
"""The non-foldable baselines (AdaptFormer, Houlsby and Pfeiffer adapters,
Convpass, VPT-shallow / deep) on every backbone row they apply to: only the
method's parameters train, every one gets a gradient, the first-step checks
pass (the site check proves every adapter runs), merging, tools/reparam.py,
ReparamCheckpointHook and AdapterSwitcher refuse them in one line naming the
method; the rows they do not apply to are refused at build in one line;
checkpoints hold only what trains and reload exactly; Convpass's branch and
VPT's prompts compute what the reference code does; exact counts at
ViT-B/16."""
import copy
import math
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch
from mmengine.config import Config
from mmpretrain.models.utils import resize_pos_embed
from torch import nn

from mmpetl.apis.reparam import build_model, reparameterize_checkpoint
from mmpetl.apis.serving import AdapterSwitcher
from mmpetl.engine.hooks import ReparamCheckpointHook
from mmpetl.fileio.checkpoint_io import CheckpointError
from mmpetl.models import (AttachSiteError, ParallelSite, PETLModule,
                           SequentialSite, StreamParallelSite)
from mmpetl.models.adapters import BottleneckAdapter, ConvpassBranch, Mona
from mmpetl.models.merge import merge_adapters
from mmpetl.registry import MODELS
from tests.support.helpers import (TINY_VIT, pretrained_cfg,
                                   randomize_trainable)
from tests.support.rows import ROWS, SWIN_B, VIT_B, stock, trainable
from tests.support.tools import ROOT

METHODS = {
    'adaptformer': dict(type='mmpetl.AdaptFormerBackbone', bottleneck=4),
    'houlsby': dict(type='mmpetl.HoulsbyAdapterBackbone', bottleneck=4),
    'pfeiffer': dict(type='mmpetl.PfeifferAdapterBackbone', bottleneck=4),
    'convpass': dict(type='mmpetl.ConvpassBackbone', dim=4),
    'mona': dict(type='mmpetl.MonaBackbone', bottleneck=4),
    'vpt_shallow': dict(type='mmpetl.VPTBackbone', mode='shallow',
                        num_tokens=3),
    'vpt_deep': dict(type='mmpetl.VPTBackbone', mode='deep', num_tokens=3),
}
#: The word each method's one-line refusal names it by.
NAMES = dict(adaptformer='AdaptFormer', houlsby='HoulsbyAdapter',
             pfeiffer='PfeifferAdapter', convpass='Convpass', mona='Mona',
             vpt_shallow='VPT-shallow',
             vpt_deep='VPT-deep')

VPT_ROWS = {'deit3', 'clip', 'dinov2', 'vit', 'seg_vit', 'videomae'}
#: Image ViTs with a plain token grid (no windows, no time).
CONVPASS_ROWS = {'deit3', 'clip', 'dinov2', 'beit', 'beit_qkv_bias', 'eva02',
                 'vit', 'seg_vit'}
#: Pre-norm Swin blocks called as block(x, hw_shape).
MONA_ROWS = {'swin', 'seg_swin', 'det_swin'}
#: Rows each method is refused on at build (in one line).
REFUSED = dict(
    adaptformer={'convnext'},  # no FFN module with its own input
    houlsby={'convnext', 'seg_vit'},  # no attention output projection site
    pfeiffer=set(),
    convpass=set(ROWS) - CONVPASS_ROWS,
    mona=set(ROWS) - MONA_ROWS,
    vpt_shallow=set(ROWS) - VPT_ROWS,
    vpt_deep=set(ROWS) - VPT_ROWS,
)

CASES = [(m, r) for m in sorted(METHODS) for r in sorted(ROWS)
         if r not in REFUSED[m]]
REFUSALS = [(m, r) for m in sorted(METHODS) for r in sorted(REFUSED[m])]
#: The row of the per-method tests below: the tiny ViT, Swin for Mona.
HOME = dict(mona='swin')


def build(method, backbone_cfg, **kwargs):
    return MODELS.build(
        dict(copy.deepcopy(METHODS[method]), **kwargs,
             backbone=copy.deepcopy(backbone_cfg)))


def petl_prefixes(model):
    """Paths of the PETL modules (what trains, by type)."""
    return tuple(f'{name}.' for name, m in model.named_modules()
                 if isinstance(m, PETLModule))


@pytest.mark.parametrize('method,row', CASES)
def test_method_trains_only_its_parameters_and_refuses_merge(
        method, row, row_cfgs):  # noqa: F811
    torch.manual_seed(0)
    model = randomize_trainable(build(method, row_cfgs[row]))
    params = trainable(model)
    assert params
    assert all(name.startswith(petl_prefixes(model)) for name in params)
    # Nothing else requires grad, and the stock parameters are all frozen.
    assert not any(p.requires_grad for n, p in model.named_parameters()
                   if not n.startswith(petl_prefixes(model)))

    model.train()
    inputs = torch.randn(2, *ROWS[row][1][0])
    out = model(inputs)  # the first-step checks run here, and pass
    assert model.trainable_checked
    if not method.startswith('vpt'):
        assert model.sites_checked
    tensors = out if isinstance(out, (list, tuple)) else [out]
    sum((t * torch.randn_like(t)).sum() for t in tensors).backward()
    assert [n for n, p in params.items() if p.grad is None] == []
    assert sum(p.grad.abs().sum() for p in params.values()) > 0

    # The method changes the model (not the stock backbone's outputs), on
    # every input size of the row (Convpass's grid, VPT's prompts).
    reference = stock(row_cfgs[row])
    model.eval()  # not chained: some backbones' train() returns None
    reference.eval()
    for shape in ROWS[row][1]:
        inputs = torch.randn(2, *shape)
        with torch.no_grad():
            ours, theirs = model(inputs), reference(inputs)
        assert all(a.shape == b.shape for a, b in zip(ours, theirs))
        assert not all(torch.allclose(a, b) for a, b in zip(ours, theirs))

    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError) as error:
        merge_adapters(model)
    message = str(error.value)
    assert '\n' not in message and NAMES[method] in message
    assert 'does not fold' in message or 'do not fold' in message
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


@pytest.mark.parametrize('method,row', REFUSALS)
def test_unsupported_row_is_refused_at_build_in_one_line(
        method, row, row_cfgs):  # noqa: F811
    with pytest.raises((KeyError, ValueError)) as error:
        build(method, row_cfgs[row])
    message = str(error.value).strip('"')
    assert '\n' not in message
    assert MODELS.get(METHODS[method]['type']).__name__ in message


@pytest.mark.parametrize('method', sorted(METHODS))
def test_checkpoint_holds_only_what_trains_and_reloads(method, row_cfgs):  # noqa: F811,E501
    row = HOME.get(method, 'vit')
    model = randomize_trainable(build(method, row_cfgs[row]))
    state = model.state_dict()
    assert set(state) == set(trainable(model))
    fresh = build(method, row_cfgs[row])
    fresh.load_state_dict(state, strict=True)
    model.eval()
    fresh.eval()
    inputs = torch.randn(2, *ROWS[row][1][0])
    with torch.no_grad():
        assert all(torch.equal(a, b)
                   for a, b in zip(model(inputs), fresh(inputs)))


def test_adaptformer_starts_as_the_stock_model(row_cfgs):  # noqa: F811
    # Up-projection zero (the reference's 'lora' init): x + MLP(LN x).
    model = build('adaptformer', row_cfgs['swin'])
    reference = stock(row_cfgs['swin'])
    model.eval()
    reference.eval()
    inputs = torch.randn(2, 3, 72, 72)
    with torch.no_grad():
        assert all(torch.equal(a, b)
                   for a, b in zip(model(inputs), reference(inputs)))
    adapters = [m for m in model.modules()
                if isinstance(m, BottleneckAdapter)]
    assert len(adapters) == 4 and all(
        not m.up.weight.any() and not m.up.bias.any() and
        not m.down.bias.any() and m.scale == 0.1 and not m.residual and
        m.dropout.p == 0.1 and isinstance(m.act, nn.ReLU) for m in adapters)
    # kaiming-uniform (a = sqrt(5)): U(-1/sqrt(d), 1/sqrt(d)).
    bound = 1 / math.sqrt(16)
    assert all(m.down.weight.abs().max() <= bound for m in adapters)


#: Per row, how the FFN's input ``h`` comes from the block's stream ``x``
#: (the block's own norm in front of the FFN; post-norm Swin V2: ``h = x``).
STREAM_TO_FFN = dict(vit='ln2', deit3='ln1', videomae='norm2', swinv2=None)


@pytest.mark.parametrize('row', sorted(STREAM_TO_FFN))
def test_adaptformer_reads_the_stream_or_the_norm(row, row_cfgs):  # noqa: F811,E501
    """adapter_input='stream' (default, the reference code) feeds the
    branch the block's stream x, 'norm' (the paper) the FFN's input LN(x);
    both train only the adapters, every one gets a gradient, and the two
    differ wherever the FFN's input is normed."""
    inputs = torch.randn(2, *ROWS[row][1][0])
    models, seen = {}, {}
    for mode in ('stream', 'norm'):
        torch.manual_seed(0)
        model = randomize_trainable(
            build('adaptformer', row_cfgs[row], adapter_input=mode))
        params = trainable(model)
        assert params and all('.adapter.' in n for n in params)
        site = next(m for m in model.modules()
                    if isinstance(m, (ParallelSite, StreamParallelSite)))
        assert isinstance(site, StreamParallelSite) == (mode == 'stream')
        seen[mode] = {}
        site.adapter.register_forward_pre_hook(
            lambda m, args, s=seen[mode]: s.setdefault('branch', args[0]))
        site.module.register_forward_pre_hook(
            lambda m, args, s=seen[mode]: s.setdefault('ffn', args[0]))
        model.train()
        out = model(inputs)  # the first-step checks run here, and pass
        tensors = out if isinstance(out, (list, tuple)) else [out]
        sum((t * torch.randn_like(t)).sum() for t in tensors).backward()
        assert [n for n, p in params.items() if p.grad is None] == []
        models[mode] = model.eval()
    ffn_input = seen['norm']['ffn']
    assert torch.equal(seen['norm']['branch'], ffn_input)
    stream = seen['stream']['branch']
    norm = STREAM_TO_FFN[row]
    if norm is None:  # post-norm: the FFN reads the stream itself
        assert torch.equal(stream, ffn_input)
        return
    # The first block (the site's): its norm, not the backbone's final one.
    block = next(m for m in models['stream'].modules()
                 if isinstance(getattr(m, norm, None), nn.LayerNorm) and (
                     hasattr(m, 'ffn') or hasattr(m, 'mlp')))
    assert torch.allclose(getattr(block, norm)(stream), ffn_input, atol=1e-6)
    assert not torch.allclose(stream, ffn_input)
    models['norm'].load_state_dict(models['stream'].state_dict())
    with torch.no_grad():
        assert not all(
            torch.allclose(a, b)
            for a, b in zip(models['stream'](inputs), models['norm'](inputs)))


def test_houlsby_and_pfeiffer_defaults(row_cfgs):  # noqa: F811
    for method, sites in (('houlsby', 4), ('pfeiffer', 2)):
        model = MODELS.build(dict(type=METHODS[method]['type'],
                                  backbone=copy.deepcopy(row_cfgs['vit'])))
        adapters = [m for m in model.modules()
                    if isinstance(m, BottleneckAdapter)]
        assert len(adapters) == sites
        for m in adapters:
            assert m.residual and m.scale == 1 and m.dropout.p == 0.1
            assert m.down.out_features == 8 and isinstance(m.act, nn.ReLU)
            # xavier-uniform on both projections: not the identity.
            assert m.up.weight.abs().max() > 0
            bound = math.sqrt(6 / (32 + 8))
            assert m.up.weight.abs().max() <= bound


def test_sites_compute_the_placements():
    torch.manual_seed(0)
    linear = nn.Linear(6, 4)
    adapter = BottleneckAdapter(4, 2, residual=True, init='xavier').eval()
    x = torch.randn(3, 6)
    site = SequentialSite(copy.deepcopy(linear), adapter, 'X: no fold')
    h = linear(x)
    expected = h + adapter.up(torch.relu(adapter.down(h)))
    assert torch.allclose(site.eval()(x), expected)
    assert site.not_mergeable_reason() == 'X: no fold'
    assert set(site.state_dict()) == {
        'weight', 'bias', *(f'adapter.{k}' for k in adapter.state_dict())}

    branch = BottleneckAdapter(6, 2, 4, scale=0.1, init='xavier').eval()
    site = ParallelSite(copy.deepcopy(linear), branch, 'Y: no fold')
    expected = linear(x) + 0.1 * branch.up(torch.relu(branch.down(x)))
    assert torch.allclose(site.eval()(x), expected)
    with pytest.raises(ValueError, match='^Y: no fold$'):
        site.merged()
    with pytest.raises(ValueError, match='one line'):
        ParallelSite(linear, branch, 'two\nlines')


def test_site_check_refuses_an_adapter_that_never_runs(row_cfgs):  # noqa: F811,E501
    # nn.MultiheadAttention applies out_proj.weight itself: a sequential
    # adapter wrapped around out_proj would never run.
    model = build('houlsby', row_cfgs['seg_vit'], targets=dict(
        proj=r'layers\.\d+\.attn\.attn\.out_proj'))
    model.train()
    with pytest.raises(AttachSiteError, match='never run'):
        model(torch.randn(1, 3, 32, 32))


def _convpass_reference(branch, x, grid):
    """Convpass's branch as the reference writes it (class token first, a
    square grid; the class token convolved as a 1x1 map)."""
    def act(z):
        return z * torch.sigmoid(1.702 * z)

    batch, r = x.shape[0], branch.down.out_features
    z = act(branch.down(x))
    patch = z[:, 1:].reshape(batch, grid, grid, r).permute(0, 3, 1, 2)
    patch = branch.conv(patch).permute(0, 2, 3, 1).reshape(batch, -1, r)
    cls = z[:, :1].reshape(batch, 1, 1, r).permute(0, 3, 1, 2)
    cls = branch.conv(cls).permute(0, 2, 3, 1).reshape(batch, 1, r)
    return branch.up(act(torch.cat([cls, patch], 1))) * branch.scale


def test_convpass_branch_and_init(row_cfgs):  # noqa: F811
    model = build('convpass', row_cfgs['vit'], scale=0.5)
    branches = [m for m in model.modules() if isinstance(m, ConvpassBranch)]
    assert len(branches) == 4  # attention and MLP of 2 blocks
    for m in branches:
        assert not m.up.weight.any() and not m.up.bias.any()
        assert not m.down.bias.any() and not m.conv.bias.any()
        assert m.dropout.p == 0.1 and m.conv.weight.shape == (4, 4, 3, 3)
    # Zero up-projection: the model starts as the stock one.
    reference = stock(row_cfgs['vit'])
    model.eval()
    reference.eval()
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert all(torch.equal(a, b)
                   for a, b in zip(model(inputs), reference(inputs)))
    branch = randomize_trainable(branches[0]).eval()
    branch.grid.size = (4, 4)
    x = torch.randn(2, 17, 32)
    with torch.no_grad():
        assert torch.allclose(branch(x), _convpass_reference(branch, x, 4),
                              atol=1e-6)
    identity = build('convpass', row_cfgs['vit'], conv_init='identity')
    conv = next(m for m in identity.modules()
                if isinstance(m, ConvpassBranch)).conv.weight
    assert torch.equal(conv[:, :, 1, 1], torch.eye(4))
    assert not conv[:, :, 0].any() and not conv[:, :, 2].any()


@pytest.mark.parametrize('row', sorted(MONA_ROWS))
def test_mona_runs_the_stock_block_between_its_adapters(row, row_cfgs):  # noqa: F811,E501
    # Mona outputs set to zero: the site must be the stock block exactly
    # (shifted windows, padding: 72x72 inputs pad).
    model = build('mona', row_cfgs[row])
    monas = [m for m in model.modules() if isinstance(m, Mona)]
    assert len(monas) == 8  # after attention and MLP of 4 blocks
    for m in monas:
        assert m.dropout.p == 0.1 and m.project1.out_features == 4
        assert torch.all(m.gamma == 1e-6) and torch.all(m.gammax == 1)
    reference = stock(row_cfgs[row])
    model.eval()
    reference.eval()
    inputs = torch.randn(2, *ROWS[row][1][0])
    with torch.no_grad():
        changed = model(inputs)
        for m in monas:
            m.project2.weight.zero_()
            m.project2.bias.zero_()
        same, theirs = model(inputs), reference(inputs)
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(same, theirs))
    assert not all(torch.allclose(a, b) for a, b in zip(changed, theirs))


def test_mona_adapter_as_the_reference():
    torch.manual_seed(0)
    mona = randomize_trainable(Mona(6, 4)).eval()
    x = torch.randn(2, 12, 6)
    z = mona.project1(mona.norm(x) * mona.gamma + x * mona.gammax)
    z = z.reshape(2, 3, 4, 4).permute(0, 3, 1, 2)
    c3, c5, c7 = mona.convs.convs
    z = (c3(z) + c5(z) + c7(z)) / 3.0 + z
    z = z + mona.convs.projector(z)
    z = z.permute(0, 2, 3, 1).reshape(2, 12, 4)
    expected = x + mona.project2(torch.nn.functional.gelu(z))
    with torch.no_grad():
        assert torch.allclose(mona(x, (3, 4)), expected, atol=1e-6)


def _vpt_reference(backbone, prompts, x, deep):
    """VPT by hand, as KMnP/vpt: prompts after the class token (no
    positional embedding), replaced at every layer (deep), removed before
    the output formatting."""
    tokens, hw = backbone.patch_embed(x)
    batch = x.shape[0]
    tokens = torch.cat((backbone.cls_token.expand(batch, -1, -1), tokens), 1)
    tokens = backbone.drop_after_pos(tokens + resize_pos_embed(
        backbone.pos_embed, backbone.patch_resolution, hw,
        mode=backbone.interpolate_mode, num_extra_tokens=1))
    tokens = backbone.pre_norm(tokens)
    n = prompts.shape[1]
    outs = []
    for i, layer in enumerate(backbone.layers):
        if i == 0 or deep:
            own = prompts[i].expand(batch, -1, -1)
            rest = tokens[:, 1:] if i == 0 else tokens[:, 1 + n:]
            tokens = torch.cat((tokens[:, :1], own, rest), 1)
        tokens = layer(tokens)
        kept = torch.cat((tokens[:, :1], tokens[:, 1 + n:]), 1)
        if i == len(backbone.layers) - 1:
            kept = backbone.ln1(kept)
        if i in backbone.out_indices:
            outs.append(backbone._format_output(kept, hw))
    return tuple(outs)


@pytest.mark.parametrize('out_type',
                         ['cls_token', 'featmap', 'avg_featmap', 'raw'])
@pytest.mark.parametrize('mode', ['shallow', 'deep'])
def test_vpt_places_and_removes_prompts(mode, out_type, tmp_path):
    cfg = pretrained_cfg(dict(TINY_VIT, out_type=out_type,
                              out_indices=(0, 1)),
                         tmp_path / 'vit.pth', perturb=0.02)
    model = MODELS.build(dict(type='mmpetl.VPTBackbone', mode=mode,
                              num_tokens=3, backbone=cfg))
    model.eval()
    assert model.prompts.embeddings.shape == (2 if mode == 'deep' else 1, 3,
                                              32)
    reference = stock(cfg)
    reference.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = model(x)
        expected = _vpt_reference(reference, model.prompts.embeddings, x,
                                  mode == 'deep')
        plain = reference(x)
    assert len(ours) == len(expected) == 2
    for a, b, c in zip(ours, expected, plain):
        assert a.shape == c.shape
        assert torch.allclose(a, b, atol=1e-6)
        assert not torch.allclose(a, c)
    assert not model.prompts._carried  # nothing left between forwards


def test_vpt_init_and_dropout(row_cfgs):  # noqa: F811
    model = build('vpt_deep', row_cfgs['vit'], num_tokens=200)
    bound = math.sqrt(6 / (3 * 8 * 8 + 32))  # patch 8, d = 32
    embeddings = model.prompts.embeddings
    assert embeddings.abs().max() <= bound
    assert embeddings.abs().max() > 0.95 * bound
    assert model.prompts.dropout.p == 0.1
    with pytest.raises(ValueError, match="mode must be one of"):
        build('vpt_deep', row_cfgs['vit'], mode='middle')


def _classifier_config(method, backbone_cfg, path):
    cfg = Config(dict(default_scope='mmpretrain', model=dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(copy.deepcopy(METHODS[method]),
                      backbone=copy.deepcopy(backbone_cfg)),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=3,
                  in_channels=32))))
    cfg.dump(str(path))
    return cfg


@pytest.mark.parametrize('method', sorted(METHODS))
def test_reparam_hook_and_switcher_refuse_in_one_line(method, row_cfgs,  # noqa: F811,E501
                                                      tmp_path):
    config = tmp_path / f'{method}.py'
    cfg = _classifier_config(method, row_cfgs[HOME.get(method, 'vit')],
                             config)
    model = build_model(cfg)  # in the config's scope
    checkpoint = tmp_path / 'adapter.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    out = tmp_path / 'merged.pth'
    with pytest.raises(CheckpointError,
                       match=f'cannot be merged: .*{NAMES[method]}'):
        reparameterize_checkpoint(str(config), str(checkpoint), str(out))
    assert not out.exists()

    work_dir = tmp_path / 'work'
    work_dir.mkdir()
    warnings = []
    logger = SimpleNamespace(warning=warnings.append)
    runner = SimpleNamespace(model=model, logger=logger,
                             work_dir=str(work_dir))
    ReparamCheckpointHook().after_train(runner)
    assert len(warnings) == 1 and '\n' not in warnings[0]
    assert warnings[0].startswith('No merged checkpoint written')
    assert NAMES[method] in warnings[0]
    assert not any(work_dir.iterdir())

    with pytest.raises(CheckpointError,
                       match=f'cannot be switched: .*{NAMES[method]}'):
        AdapterSwitcher().add_task('task', str(config), str(checkpoint))


def test_reparam_tool_exits_2_and_writes_nothing(row_cfgs, tmp_path):  # noqa: F811,E501
    config = tmp_path / 'adaptformer.py'
    model = build_model(
        _classifier_config('adaptformer', row_cfgs['vit'], config))
    checkpoint = tmp_path / 'adapter.pth'
    torch.save(dict(state_dict=model.state_dict()), checkpoint)
    out = tmp_path / 'merged.pth'
    result = subprocess.run(
        [sys.executable, 'tools/reparam.py', str(config), str(checkpoint),
         str(out)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'AdaptFormer' in result.stderr + result.stdout
    assert not out.exists()


@pytest.mark.parametrize('cfg,expected', [
    # 12 x (2 d r + r + d), d = 768: r = 64 (the paper), r = 8 (the VTAB
    # tables' 0.16M).
    (dict(type='mmpetl.AdaptFormerBackbone'), 1_189_632),
    (dict(type='mmpetl.AdaptFormerBackbone', bottleneck=8), 156_768),
    # Two adapters per block, r = 8: 0.31M.
    (dict(type='mmpetl.HoulsbyAdapterBackbone'), 313_536),
    (dict(type='mmpetl.PfeifferAdapterBackbone'), 156_768),
    # KMnP/vpt's Pfeiffer shape: r = d / 8 = 96.
    (dict(type='mmpetl.PfeifferAdapterBackbone', bottleneck=96), 1_779_840),
    # 24 x (2 d r + 9 r^2 + 2 r + d), r = 8: the paper's 0.33M.
    (dict(type='mmpetl.ConvpassBackbone'), 327_552),
    # N d (shallow), 12 N d (deep).
    (dict(type='mmpetl.VPTBackbone', mode='shallow', num_tokens=50), 38_400),
    (dict(type='mmpetl.VPTBackbone', mode='deep', num_tokens=50), 460_800),
    (dict(type='mmpetl.VPTBackbone'), 12 * 10 * 768),
])
def test_parameter_counts_at_vit_b16(cfg, expected):
    model = MODELS.build(dict(cfg, backbone=VIT_B))
    assert sum(p.numel() for p in trainable(model).values()) == expected


def test_mona_counts_at_swin_b():
    model = MODELS.build(dict(type='mmpetl.MonaBackbone', backbone=SWIN_B))
    # 2 x (133 d + 9,728) per block: blocks 2, 2, 18, 2 of d = 128 .. 1024.
    expected = sum(n * 2 * (133 * d + 9_728)
                   for n, d in zip((2, 2, 18, 2), (128, 256, 512, 1024)))
    assert expected == 3_667_456
    assert sum(p.numel() for p in trainable(model).values()) == expected
