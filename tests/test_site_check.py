# Copyright (c) mmpetl contributors. All rights reserved.
"""The first-step check's last silent cases: dead slices of a shared tensor,
FacT-TK's factors of stages that reach no output, bottleneck adapters on a
convolution, modules whose train() keeps state (LeViT), backbones holding
state sized to the batch (SparK's mask), and a fix in each refusal that
applies to the wrapper."""
import copy

import pytest
import torch

from mmpetl.models.site_check import AttachSiteError
from mmpetl.registry import MODELS
from tests.support.helpers import TINY_SWIN, TINY_VIT
from tests.support.rows import ROWS

EARLY_VIT = dict(TINY_VIT, out_indices=(0, ))
#: The sites of the first of the tiny ViT's two layers.
FIRST_LAYER = dict(
    vpt_deep=dict(layer=r'layers\.0'),
    fact_tk=dict(qkv=r'layers\.0\.attn\.qkv',
                 fc2=r'layers\.0\.ffn\.layers\.1'))
METHODS = dict(
    vpt_deep=dict(type='mmpetl.VPTBackbone', mode='deep', num_tokens=2),
    fact_tk=dict(type='mmpetl.FacTBackbone', mode='tk', rank=4))


def build(cfg, backbone, **kwargs):
    return MODELS.build(
        dict(copy.deepcopy(cfg), backbone=copy.deepcopy(backbone), **kwargs))


def first_step(model, *shape, batch=2):
    model.train()
    return model(torch.randn(batch, *shape))


@pytest.mark.parametrize('method', sorted(METHODS))
def test_a_dead_slice_of_a_shared_tensor_is_refused(method):
    # Layer 1 runs but reaches no output: its prompt set (VPT-deep), its
    # matrices' core columns (FacT-TK) get zero gradient, while the tensor
    # as a whole gets one from layer 0.
    model = build(METHODS[method], EARLY_VIT)
    with pytest.raises(AttachSiteError) as error:
        first_step(model, 3, 32, 32)
    message = str(error.value)
    assert '\n' not in message and '[layers.1' in message
    assert '[layers.0' not in message and 'targets=' in message
    # The fix it names works.
    model = build(METHODS[method], EARLY_VIT, targets=FIRST_LAYER[method])
    first_step(model, 3, 32, 32)
    assert model.trainable_checked


def test_fact_tk_factors_of_a_stage_without_output_are_refused():
    model = build(METHODS['fact_tk'], dict(TINY_SWIN, out_indices=(0, )))
    with pytest.raises(AttachSiteError, match=r'factors\.stage1\.'):
        first_step(model, 3, 56, 56)


def test_bottleneck_adapter_on_a_convolution_is_refused_at_build():
    convnext = dict(ROWS['convnext'][0], linear_pw_conv=False)
    for method in ('PfeifferAdapterBackbone', 'HoulsbyAdapterBackbone'):
        with pytest.raises(ValueError) as error:
            build(dict(type=f'mmpetl.{method}', bottleneck=4), convnext,
                  sites=('fc2', ))
        message = str(error.value)
        assert '\n' not in message and method in message
        assert 'linear_pw_conv=True' in message


def test_parameter_selection_is_told_a_fix_it_can_use():
    model = build(dict(type='mmpetl.BitFitBackbone'), EARLY_VIT)
    with pytest.raises(AttachSiteError) as error:
        first_step(model, 3, 32, 32)
    message = str(error.value)
    assert 'out_indices' in message.split(': ')[-1]
    assert 'targets=' not in message


def test_the_check_uses_the_modules_own_train():
    # LeViT's attention caches its position bias in train(False) and drops
    # it in train(True): after two train() calls there is no cache, and a
    # check that only set .training = False would fail on it.
    levit = dict(type='mmpretrain.LeViT', arch='128s', img_size=64,
                 out_indices=(0, ))
    model = build(dict(type='mmpetl.LoRABackbone', rank=2), levit,
                  targets=dict(qkv=r'stages\.0\.\d+\.block\.qkv\.linear'))
    model.train()
    first_step(model, 3, 64, 64)
    assert model.sites_checked and model.trainable_checked
    attention = model.backbone.stages[0][0].block
    assert attention.training and not hasattr(attention, 'ab')


def test_the_check_keeps_the_batch():
    # SparK's mask (at the last stage's resolution) is sized to the batch:
    # a check on one sample of it fails.
    from mmpretrain.models.utils import SparseHelper
    sparse = dict(type='mmpretrain.SparseConvNeXt',
                  arch=dict(depths=[1, 1], channels=[8, 16]),
                  out_indices=(1, ), gap_before_output=False)
    model = build(dict(type='mmpetl.BitFitBackbone'), sparse)
    previous = SparseHelper._cur_active
    SparseHelper._cur_active = torch.rand(2, 1, 4, 4) > 0.3
    try:
        first_step(model, 3, 32, 32)
    finally:
        SparseHelper._cur_active = previous
    assert model.trainable_checked
