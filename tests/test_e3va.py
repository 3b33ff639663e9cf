# Copyright (c) mmpetl contributors. All rights reserved.
"""E3VA: the frozen Swin builds no graph; the highway trains."""
import copy

import pytest
import torch

from mmpetl.models import E3VABackbone, RepAdapterBackbone
from mmpetl.registry import MODELS
from tests.support.helpers import TINY_DET_SWIN, TINY_SWIN


def e3va_param_count(dims, depths, out_indices, rank):
    """2 n_s r d_s (down) + r d_s (up) per highway stage, 2 d_s per output
    stage (LayerNorm)."""
    stages = range(max(out_indices) + 1)
    return (sum(2 * depths[s] * rank * dims[s] + rank * dims[s]
                for s in stages) + sum(2 * dims[i] for i in out_indices))


def trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.fixture(params=['seg_swin_cfg', 'det_swin_cfg'])
def e3va(request):
    backbone = request.getfixturevalue(request.param)
    return E3VABackbone(backbone, rank=4)


def test_trainable_count_tiny(e3va):
    assert trainable(e3va) == e3va_param_count((16, 32), (2, 2), (0, 1), 4)
    assert trainable(e3va) == 1056
    assert all(not p.requires_grad for p in e3va.backbone.parameters())


@pytest.mark.parametrize('scope,embed_dims,expected', [
    ('mmseg', 128, 1_199_104),  # Swin-B: the paper's 1.20M
    ('mmdet', 128, 1_199_104),
    ('mmseg', 192, 1_798_656),  # Swin-L: the reported 1.79M
])
def test_trainable_count_swin_b_l(scope, embed_dims, expected):
    """Swin-B / Swin-L built without weights, default rank 46."""
    model = MODELS.build(dict(
        type='mmpetl.E3VABackbone',
        backbone=dict(type=f'{scope}.SwinTransformer',
                      embed_dims=embed_dims, depths=(2, 2, 18, 2),
                      num_heads=(4, 8, 16, 32), window_size=12,
                      out_indices=(0, 1, 2, 3))))
    dims = tuple(embed_dims * 2**i for i in range(4))
    assert e3va_param_count(dims, (2, 2, 18, 2), (0, 1, 2, 3),
                            46) == expected
    assert trainable(model) == expected


@pytest.mark.parametrize('shape', [(2, 3, 56, 56), (2, 3, 60, 92)])
def test_starts_as_the_frozen_backbone(e3va, shape):
    e3va.eval()
    x = torch.randn(shape)
    with torch.no_grad():
        expected = e3va.backbone(x)
        outs = e3va(x)
    assert len(outs) == len(expected) == 2
    for out, ref in zip(outs, expected):
        assert out.shape == ref.shape
        torch.testing.assert_close(out, ref, rtol=0, atol=0)


def saved_tensors_in_backbone(model, x):
    """Tensors autograd saves while ``model.backbone`` runs its forward, and
    the total saved in the whole forward."""
    inside = {'flag': False}
    saved = {'backbone': [], 'all': []}
    pre = model.backbone.register_forward_pre_hook(
        lambda *_: inside.update(flag=True))
    post = model.backbone.register_forward_hook(
        lambda *_: inside.update(flag=False))

    def pack(tensor):
        saved['all'].append(tensor.shape)
        if inside['flag']:
            saved['backbone'].append(tensor.shape)
        return tensor

    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            outs = model(x)
    finally:
        pre.remove()
        post.remove()
    return outs, saved


def test_training_step_no_backbone_graph_highway_trains(e3va):
    e3va.train()
    x = torch.randn(2, 3, 60, 92)
    optimizer = torch.optim.AdamW(
        [p for p in e3va.parameters() if p.requires_grad], lr=1e-2)
    for step in range(2):
        optimizer.zero_grad()
        outs, saved = saved_tensors_in_backbone(e3va, x)
        loss = sum((out**2).mean() for out in outs)
        loss.backward()
        assert saved['backbone'] == []
        assert saved['all'], 'the highway saves its own activations'
        for name, param in e3va.backbone.named_parameters():
            assert param.grad is None, name
        if step == 0:
            # The zero-initialised output norms gate the highway at first.
            for norm in e3va.highway_norms.values():
                assert norm.weight.grad.abs().sum() > 0
        optimizer.step()
    for name, param in e3va.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, \
                name


def test_counter_check_an_adapter_inside_saves_backbone_activations(
        det_swin_cfg):
    """The check above can fail: RepAdapter back-propagates through the
    backbone, which then saves its activations."""
    model = RepAdapterBackbone(det_swin_cfg)
    model.train()
    _, saved = saved_tensors_in_backbone(model, torch.randn(1, 3, 56, 56))
    assert len(saved['backbone']) > 10


def test_checkpoint_holds_only_the_highway(e3va):
    state = e3va.state_dict()
    assert state and all(k.startswith(('highway.', 'highway_norms.'))
                         for k in state)
    assert set(state) == {n for n, p in e3va.named_parameters()
                          if p.requires_grad}


def test_unknown_backbone_is_a_clear_error():
    with pytest.raises(KeyError, match='Pass `taps=dict'):
        E3VABackbone(TINY_SWIN)


def test_deepcopy_keeps_working():
    """The copy's hooks fill the copy's captures (its highway is used)."""
    model = E3VABackbone(dict(TINY_DET_SWIN, init_cfg=None), rank=2)
    clone = copy.deepcopy(model)
    with torch.no_grad():
        for norm in clone.highway_norms.values():
            norm.weight.fill_(1.0)
    clone.eval()
    model.eval()
    x = torch.randn(1, 3, 56, 56)
    outs = clone(x)
    assert any((a - b).abs().max() > 0 for a, b in zip(outs, model(x)))


def test_unknown_memory_mode_is_a_clear_error(det_swin_cfg):
    with pytest.raises(ValueError, match='E3VA memory must be one of'):
        E3VABackbone(det_swin_cfg, memory='offload')
    with pytest.raises(ValueError, match='one per highway stage'):
        E3VABackbone(det_swin_cfg, memory=('recompute', ))


MEMORY_MODES = ['autocast', 'recompute', ('recompute', 'keep'),
                ('keep', 'recompute')]
MEMORY_IDS = ['autocast', 'recompute', 'recompute-stage0', 'recompute-stage1']


def mode_gradients(backbone_cfg, memory, x, autocast=False, seed=0):
    """Parameter gradients of one training step of an E3VA model in
    ``memory`` mode, with drop-path on in the frozen Swin (so that a
    recomputed stage must replay its random masks)."""
    torch.manual_seed(seed)
    model = E3VABackbone(dict(backbone_cfg, drop_path_rate=0.3), rank=4,
                         memory=memory).to(x.dtype)
    with torch.no_grad():
        for norm in model.highway_norms.values():
            norm.weight.normal_()
            norm.bias.normal_()
    model.train()
    model.check_trainable(x[:1])  # the first-step check, not measured here
    torch.manual_seed(seed + 1)
    with torch.autocast('cpu', dtype=torch.bfloat16, enabled=autocast):
        outs, saved = saved_tensors_in_backbone(model, x)
    generator = torch.Generator().manual_seed(seed + 2)
    loss = sum((out.to(x.dtype) * torch.randn(
        out.shape, generator=generator, dtype=x.dtype)).sum()
        for out in outs)
    loss.backward()
    assert saved['backbone'] == []
    assert all(p.grad is None for p in model.backbone.parameters())
    grads = {n: p.grad for n, p in model.named_parameters()
             if p.requires_grad}
    assert all(g is not None and g.abs().sum() > 0 for g in grads.values())
    return grads, saved


@pytest.mark.parametrize('memory', MEMORY_MODES, ids=MEMORY_IDS)
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10),
                                       (torch.float32, 1e-5)])
@pytest.mark.parametrize('scope', ['seg', 'det'])
def test_memory_modes_give_the_default_gradients(memory, dtype, tol, scope,
                                                 request):
    """Every mode's parameter gradients equal the default's, also with
    padded windows (60x92) and drop-path replayed in recomputed stages."""
    backbone_cfg = request.getfixturevalue(f'{scope}_swin_cfg')
    x = torch.randn(2, 3, 60, 92, dtype=dtype)
    expected, _ = mode_gradients(backbone_cfg, 'keep', x)
    grads, _ = mode_gradients(backbone_cfg, memory, x)
    assert set(grads) == set(expected)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=tol, atol=tol,
                                   msg=name)


@pytest.mark.parametrize('memory', MEMORY_MODES, ids=MEMORY_IDS)
def test_memory_modes_under_bf16_autocast(memory, det_swin_cfg):
    """Under mixed precision too (bf16 autocast on CPU: the recomputed
    stages replay it)."""
    x = torch.randn(2, 3, 60, 92)
    expected, _ = mode_gradients(det_swin_cfg, 'keep', x, autocast=True)
    grads, _ = mode_gradients(det_swin_cfg, memory, x, autocast=True)
    for name, grad in grads.items():
        torch.testing.assert_close(grad, expected[name], rtol=1e-5,
                                   atol=1e-5, msg=name)


def test_recompute_keeps_only_the_first_stage_input(det_swin_cfg):
    """Recomputing every stage keeps, of the highway, the input
    ``(B, N_0, C_0)`` of stage 0 only (the later stages' inputs are
    regenerated from it) and nothing the size of the taps beyond it; a
    recomputed stage after a kept one keeps its own input."""
    x = torch.randn(2, 3, 64, 64)
    _, kept = mode_gradients(det_swin_cfg, 'keep', x)
    _, recomputed = mode_gradients(det_swin_cfg, 'recompute', x)
    assert recomputed['all'] == [(2, 256, 16)]
    assert len(kept['all']) > 8 * len(recomputed['all'])
    _, last = mode_gradients(det_swin_cfg, ('keep', 'recompute'), x)
    assert (2, 64, 32) in last['all'] and (2, 256, 16) in last['all']
