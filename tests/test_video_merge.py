# Copyright (c) mmpetl contributors. All rights reserved.
"""RepAdapter and ARC on mmaction2's VideoMAE ViT and Video Swin: exact
merge into the stock layout (q/v bias sink, k bias dropped), parameter
counts."""
import copy

import pytest
import torch
from mmengine.analysis import FlopAnalyzer
from torch import nn

from mmpetl.apis.reparam import max_relative_difference
from mmpetl.engine.hooks import count_parameters
from mmpetl.models import AdaptedLinear, AdaptedModule, FrozenBackbone
from mmpetl.models.merge import merge_adapters
from mmpetl.registry import MODELS
from tests.support.helpers import randomize_trainable
from tests.support.rows import arc_params, rep_adapter_params
from tests.support.video import (TINY_SWIN3D, TINY_VIDEO_VIT, VIDEO_METHODS,
                                 video_pretrained_cfg)


@pytest.fixture(scope='module')
def video_cfgs(tmp_path_factory):
    root = tmp_path_factory.mktemp('video_backbones')
    return dict(
        vit=video_pretrained_cfg(TINY_VIDEO_VIT, root / 'vit.pth'),
        swin3d=video_pretrained_cfg(TINY_SWIN3D, root / 'swin3d.pth'))


def _build(method, backbone_cfg):
    return randomize_trainable(
        MODELS.build(dict(VIDEO_METHODS[method],
                          backbone=copy.deepcopy(backbone_cfg))))


def _stock(backbone_cfg):
    stock = MODELS.build(copy.deepcopy(backbone_cfg))
    stock.init_weights()
    stock.eval()
    return stock


@pytest.mark.parametrize('method', sorted(VIDEO_METHODS))
@pytest.mark.parametrize('backbone,shape', [
    ('vit', (3, 4, 32, 32)),
    ('vit', (3, 4, 48, 40)),  # other size: interpolated position embedding
    ('swin3d', (3, 4, 40, 40)),  # 2x10x10, 2x5x5 tokens: windows pad
    ('swin3d', (3, 6, 36, 52)),  # 3x9x13: pads in time and both sides
    ('swin3d', (3, 4, 24, 24)),  # 2x6x6, 2x3x3: no padding
])
def test_merged_video_model_matches_adapter_model(method, backbone, shape,
                                                  video_cfgs):
    backbone_cfg = video_cfgs[backbone]
    model = _build(method, backbone_cfg).eval()
    merged = merge_adapters(model)
    assert not any(
        isinstance(m, (AdaptedLinear, AdaptedModule, FrozenBackbone))
        for m in merged.modules())
    inputs = torch.randn(2, *shape)
    assert max_relative_difference(model, merged, inputs) < 1e-5
    # Adapters are not the identity: the check above is not vacuous.
    assert max_relative_difference(_stock(backbone_cfg), merged,
                                   inputs) > 1e-3


@pytest.mark.parametrize('method', sorted(VIDEO_METHODS))
@pytest.mark.parametrize('backbone', ['vit', 'swin3d'])
def test_merged_video_model_is_the_stock_model(method, backbone, video_cfgs):
    backbone_cfg = video_cfgs[backbone]
    model = _build(method, backbone_cfg)
    merged = merge_adapters(model)
    stock = _stock(backbone_cfg)
    assert type(merged) is type(stock)
    assert [type(m) for m in merged.modules()] == [
        type(m) for m in stock.modules()
    ]
    stock.load_state_dict(merged.state_dict(), strict=True)
    assert sum(p.numel() for p in merged.parameters()) == sum(
        p.numel() for p in stock.parameters())
    inputs = (torch.randn(1, 3, 4, 32, 32), )
    merged.eval()
    assert FlopAnalyzer(merged, inputs).total() == FlopAnalyzer(
        stock, inputs).total()
    # Before merging, the state dict is the stock one plus the adapters'
    # (the VideoMAE attention keeps its q_bias / v_bias keys).
    adapter_model = _build(method, backbone_cfg)
    adapter_model.save_frozen = True
    keys = {
        k[len('backbone.'):]
        for k in adapter_model.state_dict() if '.adapter.' not in k and
        not k.startswith('shared_projections.')
    }
    assert keys == set(stock.state_dict())


def test_video_vit_q_and_v_biases_absorb_the_folded_bias(video_cfgs):
    model = _build('repadapter', video_cfgs['vit']).eval()
    attn = model.backbone.blocks[0].attn
    assert isinstance(attn, AdaptedModule)
    _, shift = attn.adapter.affine()
    folded = attn.qkv.weight.double() @ shift
    merged = merge_adapters(model)
    merged_attn = merged.blocks[0].attn
    d = merged_attn.embed_dims
    torch.testing.assert_close(merged_attn.q_bias.double(),
                               attn.q_bias.double() + folded[:d])
    torch.testing.assert_close(merged_attn.v_bias.double(),
                               attn.v_bias.double() + folded[2 * d:])
    assert merged_attn.qkv.bias is None
    # The k third is not zero, so dropping it is a real claim (next test).
    assert folded[d:2 * d].abs().max() > 1e-2


def test_video_vit_attention_is_invariant_to_a_key_bias(video_cfgs):
    """Softmax over keys ignores q.b_k, which is the same for every key."""
    stock = _stock(video_cfgs['vit'])
    attn = stock.blocks[0].attn
    x = torch.randn(2, 32, attn.embed_dims)
    expected = attn(x)
    d = attn.embed_dims
    for bias_index, invariant in ((1, True), (0, False), (2, False)):
        # The same attention computing qkv with a full bias whose q, k or v
        # part gets a random extra term.
        biased = copy.deepcopy(attn)
        del biased.q_bias, biased.v_bias  # now it calls self.qkv(x)
        qkv = nn.Linear(d, 3 * d)
        qkv.weight = attn.qkv.weight
        with torch.no_grad():
            bias = torch.cat([attn.q_bias, torch.zeros(d), attn.v_bias])
            bias[bias_index * d:(bias_index + 1) * d] += torch.randn(d)
            qkv.bias.copy_(bias)
        biased.qkv = qkv
        actual = biased(x)
        scale = expected.abs().max()
        difference = float((actual - expected).abs().max() / scale)
        if invariant:
            assert difference < 1e-5
        else:
            assert difference > 1e-2


def test_video_vit_without_qkv_bias(tmp_path):
    cfg = video_pretrained_cfg(
        dict(TINY_VIDEO_VIT, qkv_bias=False), tmp_path / 'vit.pth')
    # No bias takes the folded shift: the attention sites get shift-free
    # adapters, which fold exactly (the FFN sites keep theirs).
    for method in VIDEO_METHODS:
        model = _build(method, cfg).eval()
        assert [s.shift for s in model.attach_sites] == [False, True] * 2
        merged = merge_adapters(model)
        inputs = torch.randn(2, 3, 4, 32, 32)
        assert max_relative_difference(model, merged, inputs) < 1e-5


def test_module_input_sites_from_a_config(video_cfgs):
    targets = dict(
        attn=dict(module=r'blocks\.\d+\.attn', linear='qkv',
                  bias_sink=['q_bias', None, 'v_bias']))
    model = randomize_trainable(MODELS.build(
        dict(type='mmpetl.ARCBackbone', hidden_dim=6, targets=targets,
             backbone=copy.deepcopy(video_cfgs['vit'])))).eval()
    assert sum(isinstance(m, AdaptedModule) for m in model.modules()) == 2
    merged = merge_adapters(model)
    inputs = torch.randn(2, 3, 4, 32, 32)
    assert max_relative_difference(model, merged, inputs) < 1e-5
    bad = dict(attn=dict(module=r'blocks\.\d+\.attn', linear='qkvx'))
    with pytest.raises(TypeError, match="has no weight parameter 'qkvx.weight'"):
        MODELS.build(dict(type='mmpetl.ARCBackbone', targets=bad,
                          backbone=copy.deepcopy(video_cfgs['vit'])))


def test_video_merge_keeps_float64_exact(video_cfgs):
    # .double() converts the adopted parameters of AdaptedModule too.
    model = _build('arc', video_cfgs['vit']).double().eval()
    merged = merge_adapters(model)
    inputs = torch.randn(2, 3, 4, 32, 32, dtype=torch.float64)
    assert max_relative_difference(model, merged, inputs) < 1e-12



@pytest.mark.parametrize('backbone,widths', [
    # (share group width, sites in it) for attn and ffn
    ('vit', [(32, 2), (32, 2)]),
    ('swin3d', [(16, 2), (16, 2), (32, 2), (32, 2)]),
])
def test_video_parameter_counts(backbone, widths, video_cfgs):
    counts = {
        method: count_parameters(_build(method, video_cfgs[backbone]))
        for method in VIDEO_METHODS
    }
    sites = [d for d, n in widths for _ in range(n)]
    assert counts['repadapter']['trainable'] == sum(
        rep_adapter_params(d) for d in sites)
    assert counts['arc']['trainable'] == arc_params(widths, hidden=6)
    stock = count_parameters(_stock(video_cfgs[backbone]))['total']
    for method, count in counts.items():
        assert count['total'] == stock + count['trainable']


def test_real_size_parameter_counts():
    vit_b = dict(type='mmaction.VisionTransformer', init_cfg=None)
    repadapter = MODELS.build(
        dict(type='mmpetl.RepAdapterBackbone', backbone=vit_b))
    arc = MODELS.build(dict(type='mmpetl.ARCBackbone', backbone=vit_b))
    # The image ViT-B/16 figures: the video ViT-B has the same 24 sites.
    assert count_parameters(repadapter)['trainable'] == 24 * \
        rep_adapter_params(768) == 239_808
    assert count_parameters(arc)['trainable'] == arc_params(
        [(768, 12), (768, 12)], hidden=50) == 96_432

    swin_b = dict(type='mmaction.SwinTransformer3D', arch='base',
                  pretrained2d=False, init_cfg=None)
    repadapter = MODELS.build(
        dict(type='mmpetl.RepAdapterBackbone', backbone=swin_b))
    arc = MODELS.build(dict(type='mmpetl.ARCBackbone', backbone=swin_b))
    # widths 128, 256, 512, 1024; depths 2, 2, 18, 2; attn and ffn sites
    stages = [(128, 2), (256, 2), (512, 18), (1024, 2)]
    assert count_parameters(repadapter)['trainable'] == sum(
        2 * n * rep_adapter_params(d) for d, n in stages) == 313_216
    assert count_parameters(arc)['trainable'] == arc_params(
        [(d, n) for d, n in stages for _ in range(2)], hidden=50) == 218_464
