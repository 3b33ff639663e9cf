# Copyright (c) mmpetl contributors. All rights reserved.
"""LoRand and Partial-1 on the dense Swin backbones (their reference
formulas, placements and counts at Swin-B / Swin-L), and the deviations of
issue 30 checked against the reference code's formulas: DoRA's dropout
(NVlabs/DoRA, peft), Mona's init, SSF without Swin's patch-merging norms,
VPT-shallow without prompt dropout, Convpass's drop path on the bypass."""
import copy

import pytest
import torch
import torch.nn.functional as F

from mmpetl.apis.reparam import max_relative_difference
from mmpetl.models import ParallelSite, SequentialSite
from mmpetl.models.adapters import LoRADelta
from mmpetl.models.merge import merge_adapters
from mmpetl.registry import MODELS
from tests.support.helpers import TINY_VIT, randomize_trainable
from tests.support.rows import ROWS, SWIN_B, trainable

#: Real-size mmseg Swin-B and Swin-L (window 7), structure only.
SEG_SWIN = dict(
    B=dict(type='mmseg.SwinTransformer', embed_dims=128, depths=(2, 2, 18, 2),
           num_heads=(4, 8, 16, 32)),
    L=dict(type='mmseg.SwinTransformer', embed_dims=192, depths=(2, 2, 18, 2),
           num_heads=(6, 12, 24, 48)))
WIDTHS = dict(B=(128, 256, 512, 1024), L=(192, 384, 768, 1536))
HEADS = dict(B=32, L=48)


def lorand_count(widths, depths=(2, 2, 18, 2), alpha=2, beta=8, factor=2):
    """The authors' ``Lorand`` (two ``Lorand_Multi``) twice per block."""
    per_block = 0
    for d, n in zip(widths, depths):
        h = d // factor
        one = 2 * alpha * beta * (d + h) + 2 * alpha * beta**2 + d + h
        per_block += n * 2 * one
    return per_block


@pytest.mark.parametrize('size,lorand,partial', [
    ('B', 1_203_456, 12_601_632),  # the tables' 1.20M and 12.60M
    ('L', 1_799_040, 28_339_632),  # 1.80M and 28.34M
])
def test_lorand_and_partial1_counts_at_swin_b_and_l(size, lorand, partial):
    d, heads = WIDTHS[size][-1], HEADS[size]
    assert lorand == lorand_count(WIDTHS[size])
    assert partial == 12 * d * d + 13 * d + 13 * 13 * heads
    # The real widths, heads and window with fewer blocks in the first
    # three stages (the counts are sums over blocks; a whole Swin-L takes
    # a minute to build on 2 cores).
    depths = (1, 1, 1, 2)
    stock = MODELS.build(dict(SEG_SWIN[size], depths=depths))
    for cfg, expected in (
        (dict(type='mmpetl.LoRandBackbone'), lorand_count(WIDTHS[size],
                                                          depths)),
        (dict(type='mmpetl.Partial1Backbone'), partial)):
        model = MODELS.build(dict(cfg, backbone=copy.deepcopy(stock)))
        assert sum(p.numel() for p in trainable(model).values()) == expected


@pytest.mark.parametrize('row', ['seg_swin', 'det_swin', 'swin'])
def test_lorand_computes_the_reference_block(row):
    cfg, shapes = ROWS[row]
    model = MODELS.build(dict(type='mmpetl.LoRandBackbone', backbone=cfg))
    model.train()
    model(torch.randn(1, *shapes[0]))  # first-step checks pass
    model.eval()
    reference = MODELS.build(copy.deepcopy(cfg))
    reference.load_state_dict(model.backbone.state_dict(), strict=False)
    reference.eval()
    block, stock = model.backbone.stages[0].blocks[1], \
        reference.stages[0].blocks[1]
    a1 = block.attn.drop.adapter
    a2 = block.ffn.dropout_layer.adapter

    def lorand(adapter, h):  # the authors' Lorand_Multi, branch by branch
        def project(p, h):
            weight = sum((p.p[i] @ p.kernel[i] @ p.q[i]).t()
                         for i in range(len(p.p)))
            return F.linear(h, weight, p.bias)
        return h + project(adapter.up, F.gelu(project(adapter.down, h)))

    hw = (9, 9)  # 36x36 tokens padded to windows of 7
    x = torch.randn(2, 81, block.norm1.normalized_shape[0])
    with torch.no_grad():
        h = x + lorand(a1, stock.attn(stock.norm1(x), hw))
        expected = h + lorand(
            a2, stock.ffn.dropout_layer(stock.ffn.layers(stock.norm2(h))))
        assert torch.allclose(block(x, hw), expected, atol=1e-5)
    assert isinstance(block.attn.drop, SequentialSite)
    with pytest.raises(ValueError, match="LoRand's adapter is a GELU"):
        merge_adapters(model)


def test_lorand_on_vit_and_refusals():
    model = MODELS.build(dict(type='mmpetl.LoRandBackbone', backbone=TINY_VIT))
    d = 32  # two blocks of width 32: the same formula as Swin's blocks
    assert sum(p.numel() for p in trainable(model).values()) == \
        lorand_count((d, ), depths=(2, ))
    model.train()
    model(torch.randn(1, 3, 32, 32))  # every adapter runs
    # BEiT applies one drop-path module to both branches of a layer.
    with pytest.raises(ValueError, match='LoRandBackbone does not support '
                       'mmpretrain.BEiTViT: LoRand sits where each'):
        MODELS.build(dict(type='mmpetl.LoRandBackbone',
                          backbone=ROWS['beit'][0]))


@pytest.mark.parametrize('unit', ['block', 'stage'])
def test_partial1_trains_the_last_block_only_and_merges(unit):
    cfg, shapes = ROWS['seg_swin']
    model = MODELS.build(dict(type='mmpetl.Partial1Backbone', unit=unit,
                              backbone=copy.deepcopy(cfg)))
    last = 'stages.1.blocks.1.' if unit == 'block' else 'stages.1.'
    names = {n for n, _ in model.backbone.named_parameters()
             if n.startswith(last)}
    assert set(trainable(model)) == {f'backbone.{n}' for n in names}
    model.train()
    outs = model(torch.randn(2, *shapes[0]))
    sum(o.square().sum() for o in outs).backward()
    for name, param in model.backbone.named_parameters():
        assert (param.grad is not None) == (name in names), name
    assert set(model.state_dict()) == {f'backbone.{n}' for n in names}
    randomize_trainable(model)
    merged = merge_adapters(model)
    assert type(merged).__module__.startswith('mmseg')
    assert max_relative_difference(model, merged,
                                   torch.randn(1, *shapes[0])) == 0


def test_partial1_on_a_vit_and_refusals():
    model = MODELS.build(dict(type='mmpetl.Partial1Backbone',
                              backbone=TINY_VIT))
    assert set(trainable(model)) == {
        f'backbone.layers.1.{n}'
        for n, _ in model.backbone.layers[1].named_parameters()
    }
    with pytest.raises(ValueError, match="unit='stage' needs stages"):
        MODELS.build(dict(type='mmpetl.Partial1Backbone', unit='stage',
                          backbone=TINY_VIT))
    with pytest.raises(ValueError, match='Partial1Backbone does not support'
                       ' ResNet: it has no stages, layers or blocks'):
        MODELS.build(dict(type='mmpetl.Partial1Backbone',
                          backbone=dict(type='mmpretrain.ResNet', depth=18)))


@pytest.mark.parametrize('dora_dropout', ['reference', 'branch'])
def test_dora_with_dropout_is_the_reference_formula(dora_dropout):
    """NVlabs/DoRA and peft: ``W x + b + (n - 1) W drop(x) + n s B A
    drop(x)``; ``'branch'``: ``n (W x + s B A drop(x)) + b``."""
    weight, bias = torch.randn(12, 8), torch.randn(12)
    delta = LoRADelta(8, 12, rank=2, alpha=4., dropout=0.3, dora=True,
                      weight=weight, dora_dropout=dora_dropout).train()
    randomize_trainable(delta)
    x = torch.randn(5, 8)
    torch.manual_seed(0)
    out = delta(x, weight, bias)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in delta.parameters()]
    delta.zero_grad()

    torch.manual_seed(0)
    dropped = F.dropout(x, 0.3)
    s = delta.scaling
    adapted = weight + s * delta.lora_B @ delta.lora_A
    n = delta.magnitude / adapted.norm(dim=1).detach()
    lora = s * F.linear(dropped, delta.lora_B @ delta.lora_A)
    if dora_dropout == 'reference':
        expected = F.linear(x, weight, bias) + (n - 1) * F.linear(
            dropped, weight) + n * lora
    else:
        expected = n * (F.linear(x, weight) + lora) + bias
    expected.square().sum().backward()
    assert torch.allclose(out, expected, atol=1e-5)
    for got, param in zip(grads, delta.parameters()):
        assert torch.allclose(got, param.grad, atol=1e-4)
    # The two forms differ in training, agree in evaluation.
    delta.eval()
    assert torch.allclose(delta(x, weight, bias),
                          F.linear(x, n[:, None] * adapted, bias), atol=1e-5)


def test_mona_projections_are_initialised_as_the_reference_runs():
    from mmpetl.models.adapters import Mona
    torch.manual_seed(0)
    mona = Mona(256, 64)
    for linear in (mona.project1, mona.project2):
        assert not linear.bias.any()
        assert abs(linear.weight.std().item() - 0.02) < 0.002
    torch_init = Mona(256, 64, init='torch')
    assert torch_init.project1.bias.any()  # PyTorch's uniform bias
    assert torch_init.project1.weight.abs().max() <= 1 / 16  # 1/sqrt(256)


def test_ssf_on_swin_leaves_the_merging_norms_out_as_the_reference():
    from mmpetl.models.adapters.ssf import SSF_SITES
    counts = [
        sum(p.numel() for p in trainable(MODELS.build(
            dict(type='mmpetl.SSFBackbone', backbone=SWIN_B,
                 **extra))).values())
        for extra in ({}, dict(sites=SSF_SITES + ('merging_norm', )))
    ]
    merging = 2 * sum(4 * d for d in (128, 256, 512))
    assert counts == [267_264, 267_264 + merging]
    assert merging == 7_168


def test_vpt_prompt_dropout_by_mode():
    shallow, deep, old = (MODELS.build(
        dict(type='mmpetl.VPTBackbone', backbone=TINY_VIT, **kw))
        for kw in (dict(mode='shallow'), dict(mode='deep'),
                   dict(mode='shallow', dropout=0.1)))
    assert shallow.prompts.dropout.p == 0  # KMnP/vpt: none in shallow mode
    assert deep.prompts.dropout.p == 0.1
    assert old.prompts.dropout.p == 0.1


def test_convpass_drops_the_bypass_as_the_reference():
    """``x + dp(Attn(LN x)) + dp(f(LN x)) s``: each sample's branch output
    is zero or ``f / (1 - p)``, with its own mask."""
    cfg = dict(TINY_VIT, drop_path_rate=0.5)
    model = MODELS.build(dict(type='mmpetl.ConvpassBackbone', backbone=cfg))
    site = model.backbone.layers[1].attn
    assert isinstance(site, ParallelSite)
    rate = site.module.out_drop.drop_prob
    assert rate > 0 and site.adapter.drop_path.drop_prob == rate
    randomize_trainable(model)
    model.backbone.patch_embed(torch.randn(16, 3, 32, 32))  # the grid
    x = torch.randn(16, 17, 32)
    branch = site.adapter.eval()
    with torch.no_grad():
        full = branch(x)
        branch.train()
        torch.manual_seed(0)
        dropped = branch.drop_path(full)
    kept = dropped.flatten(1).any(1)
    assert 0 < kept.sum() < 16
    assert torch.allclose(dropped[kept], full[kept] / (1 - rate), atol=1e-5)
    without = MODELS.build(dict(type='mmpetl.ConvpassBackbone',
                                drop_path=False, backbone=cfg))
    assert without.backbone.layers[1].attn.adapter.drop_path.drop_prob == 0
