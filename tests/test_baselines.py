# Copyright (c) mmpetl contributors. All rights reserved.
"""The foldable baselines (LoRA, DoRA, rsLoRA, SSF, BitFit, LN-tuning,
FacT-TT / TK) on every backbone row they apply to: only the method's
parameters train, every one gets a gradient, the merged stock model equals
the adapted one after perturbing them (window padding included), loads
strictly into the stock backbone with its parameter count; a kind the
backbone lacks is one line at build. Exact counts at ViT-B/16 by formula."""
import copy

import pytest
import torch

from mmpetl.apis.reparam import max_relative_difference
from mmpetl.models import AdaptedSite
from mmpetl.models.merge import merge_adapters
from mmpetl.registry import MODELS
from tests.support.helpers import randomize_trainable
from tests.support.rows import ROWS, SWIN_B, VIT_B, stock, trainable


METHODS = {
    'lora': dict(type='mmpetl.LoRABackbone', rank=4),
    'dora': dict(type='mmpetl.LoRABackbone', rank=4, dora=True),
    'rslora': dict(type='mmpetl.LoRABackbone', rank=4, rslora=True,
                   sites=('qkv', 'fc2')),
    'ssf': dict(type='mmpetl.SSFBackbone'),
    'bitfit': dict(type='mmpetl.BitFitBackbone'),
    'ln': dict(type='mmpetl.LNTuningBackbone'),
    'fact_tt': dict(type='mmpetl.FacTBackbone', mode='tt', rank=4,
                    scale=0.5),
    'fact_tk': dict(type='mmpetl.FacTBackbone', mode='tk', rank=4,
                    scale=0.5),
}

#: Rows whose attention applies qkv.weight itself (no ``qkv`` kind), and
#: ConvNeXt (no attention): the methods that need those kinds refuse them.
NO_QKV = {'beit', 'beit_qkv_bias', 'swinv2', 'seg_vit', 'videomae',
          'convnext'}
NEEDS_QKV = {'lora', 'dora', 'rslora'}
#: SwiGLU FFNs whose hidden width is no multiple of the token width: FacT's
#: d x d blocks do not tile them (refused at build, in one line).
NO_FACT = {'dinov2', 'eva02'}



def build(method, backbone_cfg):
    return MODELS.build(
        dict(copy.deepcopy(METHODS[method]),
             backbone=copy.deepcopy(backbone_cfg)))



CASES = [(m, r) for m in sorted(METHODS) for r in sorted(ROWS)
         if not (m in NEEDS_QKV and r in NO_QKV)
         and not (m.startswith('fact') and r in NO_FACT)]


@pytest.mark.parametrize('method,row', CASES)
def test_method_trains_only_its_parameters_and_folds(method, row, row_cfgs):
    model = randomize_trainable(build(method, row_cfgs[row]))
    shapes = ROWS[row][1]
    params = trainable(model)
    assert params
    # Only the method's parameters: in sites' adapters, wrapper-owned
    # factors, or the selected stock parameters.
    selected = {f'backbone.{n}' for n in model.selected_parameters()}
    prefixes = tuple(f'backbone.{p}' for p in model.trainable_prefixes())
    for name in params:
        assert (name in selected or name.startswith(prefixes)
                or not name.startswith('backbone.')), name
    model.train()
    out = model(torch.randn(2, *shapes[0]))  # first-step checks pass
    assert model.trainable_checked
    tensors = out if isinstance(out, (list, tuple)) else [out]
    sum((t * torch.randn_like(t)).sum() for t in tensors).backward()
    # mmpretrain's DeiT3 never runs its layers' ln2 (it applies ln1 twice):
    # selected ln2 parameters cannot train (a warning says so).
    dead = {n for n in params if row == 'deit3' and '.ln2.' in n}
    assert all(p.grad is not None for n, p in params.items() if n not in dead)

    reference = copy.deepcopy(model).eval()
    merged = merge_adapters(model)
    assert not any(isinstance(m, AdaptedSite) for m in merged.modules())
    target = stock(row_cfgs[row])
    assert type(merged) is type(target)
    # Strictly the stock keys (Swin V2 drops its re-computed tables from
    # every state dict it loads, its own included).
    own = target.load_state_dict(target.state_dict(), strict=False)
    loaded = target.load_state_dict(merged.state_dict(), strict=False)
    assert loaded.missing_keys == own.missing_keys
    assert not loaded.unexpected_keys
    assert sum(p.numel() for p in merged.parameters()) == sum(
        p.numel() for p in target.parameters())
    for shape in shapes:
        inputs = torch.randn(2, *shape)
        assert max_relative_difference(reference, target, inputs) < 1e-5


@pytest.mark.parametrize('method', ['lora', 'dora'])
def test_missing_kind_is_one_line(method, row_cfgs):
    with pytest.raises(KeyError, match="no site kind.*'qkv'.*choose sites="):
        build(method, row_cfgs['beit'])


@pytest.mark.parametrize('row', sorted(NO_FACT))
def test_fact_refuses_ffn_widths_it_cannot_tile(row, row_cfgs):
    with pytest.raises(ValueError,
                       match=r'FacTBackbone: site \S+ \(fc\d\): .* x .*'
                       'matrices'):
        build('fact_tt', row_cfgs[row])


def test_checkpoint_holds_only_what_trains_and_reloads(row_cfgs):
    for method in ('ssf', 'bitfit', 'fact_tk', 'dora'):
        model = randomize_trainable(build(method, row_cfgs['vit']))
        state = model.state_dict()
        assert set(state) == set(trainable(model)), method
        fresh = build(method, row_cfgs['vit'])
        fresh.load_state_dict(state, strict=True)
        inputs = torch.randn(2, 3, 32, 32)
        assert max_relative_difference(model, fresh, inputs) == 0, method



@pytest.mark.parametrize('cfg,expected', [
    # 12 x 8 x (768 + 2304): the tables' 0.29M.
    (dict(type='mmpetl.LoRABackbone'), 294_912),
    (dict(type='mmpetl.LoRABackbone', dora=True), 294_912 + 12 * 2304),
    # 2 x (12 x (768 + 2304 + 768 + 768 + 3072 + 768) + 768 + 768): 0.21M.
    (dict(type='mmpetl.SSFBackbone'), 205_824),
    # 12 x (768 + 2304 + 768 + 768 + 3072 + 768) + 768 + 768: 0.10M.
    (dict(type='mmpetl.BitFitBackbone'), 102_912),
    (dict(type='mmpetl.LNTuningBackbone'), 25 * 2 * 768),
    # 2 d r + 12 L r^2 (r = 8); 2 d r + r^3 + 12 L r (r = 32).
    (dict(type='mmpetl.FacTBackbone', mode='tt'), 2 * 768 * 8 + 144 * 64),
    (dict(type='mmpetl.FacTBackbone', mode='tk', rank=32),
     2 * 768 * 32 + 32**3 + 144 * 32),
])
def test_parameter_counts_at_vit_b16(cfg, expected):
    model = MODELS.build(dict(cfg, backbone=VIT_B))
    assert sum(p.numel() for p in trainable(model).values()) == expected


def test_lora_counts_at_swin_b():
    model = MODELS.build(dict(type='mmpetl.LoRABackbone', backbone=SWIN_B))
    # rank 8 on qkv (d -> 3d) of 2, 2, 18, 2 blocks of widths 128 .. 1024.
    expected = sum(n * 8 * 4 * d for n, d in zip((2, 2, 18, 2),
                                                 (128, 256, 512, 1024)))
    assert sum(p.numel() for p in trainable(model).values()) == expected
