# Copyright (c) mmpetl contributors. All rights reserved.
import pytest
import torch
from torch import nn

from mmpetl.models import AdaptedLinear, MergeableAdapter
from mmpetl.models.adapters import (ARCAdapter, GroupedLinear, RepAdapter,
                                    SharedProjection)
from mmpetl.registry import MODELS


def test_grouped_linear_is_grouped_conv1d():
    torch.manual_seed(0)
    layer = GroupedLinear(8, 12, groups=2)
    nn.init.normal_(layer.weight)
    nn.init.normal_(layer.bias)
    conv = nn.Conv1d(8, 12, 1, groups=2)
    conv.weight.data = layer.weight.data.unsqueeze(-1)
    conv.bias.data = layer.bias.data
    x = torch.randn(3, 5, 8)
    expected = conv(x.transpose(1, 2)).transpose(1, 2)
    torch.testing.assert_close(layer(x), expected)
    torch.testing.assert_close(x @ layer.dense_weight().t() + layer.bias,
                               expected)


def test_grouped_linear_rejects_indivisible_sizes():
    with pytest.raises(ValueError, match='divisible by groups'):
        GroupedLinear(7, 12, groups=2)


def _adapters():
    projection = SharedProjection(16, 6)
    return [
        RepAdapter(16, hidden_dim=8, groups=2, scale=0.5),
        RepAdapter(16, hidden_dim=4, groups=4, scale=10),
        ARCAdapter(projection),
    ]


@pytest.mark.parametrize('index', range(3))
def test_adapters_are_identity_at_init(index):
    adapter = _adapters()[index].train()
    x = torch.randn(2, 5, 16)
    assert torch.equal(adapter(x), x)


def test_arc_reference_ffn_init_is_not_identity():
    adapter = ARCAdapter(SharedProjection(16, 6), scale_init='xavier_uniform')
    x = torch.randn(2, 5, 16)
    assert not torch.allclose(adapter.eval()(x), x)
    with pytest.raises(ValueError, match='scale_init'):
        ARCAdapter(SharedProjection(16, 6), scale_init='ones')


@pytest.mark.parametrize('index', range(3))
def test_affine_form_matches_forward(index):
    adapter = _adapters()[index].double().eval()
    with torch.no_grad():
        for p in adapter.parameters():
            p.normal_()
        if isinstance(adapter, ARCAdapter):
            # The shared projection belongs to the wrapper, not the adapter.
            adapter._projection[0].double()
            adapter.projection.normal_()
    x = torch.randn(4, 7, 16, dtype=torch.float64)
    matrix, shift = adapter.affine()
    torch.testing.assert_close(
        x @ matrix.t() + shift, adapter(x), rtol=1e-12, atol=1e-12)


def test_dropout_acts_in_training_only():
    adapter = RepAdapter(16, dropout=0.5)
    nn.init.normal_(adapter.up.weight)
    x = torch.randn(64, 16)
    assert not torch.equal(adapter.train()(x), adapter(x))
    assert torch.equal(adapter.eval()(x), adapter(x))


def test_adapted_linear_keeps_parameters_and_merges():
    torch.manual_seed(0)
    linear = nn.Linear(16, 24).double()
    adapter = RepAdapter(16, scale=5).double()
    nn.init.normal_(adapter.up.weight)
    nn.init.normal_(adapter.up.bias)
    adapted = AdaptedLinear(linear, adapter).eval()
    assert adapted.weight is linear.weight and adapted.bias is linear.bias
    x = torch.randn(3, 16, dtype=torch.float64)
    merged = adapted.merged()
    assert type(merged) is nn.Linear
    torch.testing.assert_close(merged(x), adapted(x), rtol=1e-12, atol=1e-12)


def test_merge_needs_a_bias_for_a_nonzero_shift():
    adapter = RepAdapter(16)
    nn.init.normal_(adapter.up.bias)
    adapted = AdaptedLinear(nn.Linear(16, 8, bias=False), adapter)
    with pytest.raises(ValueError, match='without bias'):
        adapted.merged()


def _vit_b(method, **kwargs):
    # Random weights: only the structure matters for counting.
    return MODELS.build(
        dict(
            type=f'mmpetl.{method}',
            backbone=dict(type='mmpretrain.VisionTransformer', arch='b'),
            **kwargs))


def _count(model, predicate):
    return sum(p.numel() for n, p in model.named_parameters()
               if p.requires_grad and predicate(n, p))


def test_repadapter_vit_b16_parameter_count_matches_paper():
    model = _vit_b('RepAdapterBackbone')
    assert len(model.attach_sites) == 24
    weights = _count(model, lambda n, p: p.dim() > 1)
    assert weights == 24 * (768 * 8 + 8 * 768 // 2) == 221_184
    assert _count(model, lambda n, p: True) == 239_808


def test_repadapter_attention_only_variant():
    model = _vit_b('RepAdapterBackbone', sites='attn')
    assert [s.kind for s in model.attach_sites] == ['attn'] * 12
    assert _count(model, lambda n, p: p.dim() > 1) == 221_184 // 2


def test_arc_vit_b16_parameter_count_matches_paper():
    model = _vit_b('ARCBackbone')
    assert _count(model, lambda n, p: True) == 96_432
    assert set(model.shared_projections) == {'attn', 'ffn'}
    # One projection object serves all 12 layers of a site kind.
    adapters = [m for m in model.modules() if isinstance(m, ARCAdapter)]
    assert len({id(a.projection) for a in adapters}) == 2


def test_arc_shares_projections_per_swin_stage(swin_cfg):
    model = MODELS.build(dict(type='mmpetl.ARCBackbone', backbone=swin_cfg,
                              hidden_dim=4))
    assert sorted(model.shared_projections) == [
        'attn_stage0', 'attn_stage1', 'ffn_stage0', 'ffn_stage1']
    assert model.shared_projections['attn_stage1'].weight.shape == (32, 4)


def test_trainable_set_is_adapters_only_and_gets_gradients(vit_cfg):
    from tests.support.helpers import randomize_trainable
    model = randomize_trainable(
        MODELS.build(dict(type='mmpetl.ARCBackbone', backbone=vit_cfg,
                          hidden_dim=4)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    by_type = set()
    for name, module in model.named_modules():
        if isinstance(module, (MergeableAdapter, SharedProjection)):
            by_type |= {f'{name}.{n}' for n, _ in module.named_parameters()}
    assert trainable == by_type and trainable
    model.train()
    out = model(torch.randn(2, 3, 32, 32))
    # Not a plain sum: the final LayerNorm makes that constant.
    (out[-1] * torch.randn_like(out[-1])).sum().backward()
    for name, param in model.named_parameters():
        if param.requires_grad:
            assert param.grad is not None and param.grad.abs().sum() > 0, name
        else:
            assert param.grad is None, name


def test_unknown_sites_and_backbones_are_clear_errors(vit_cfg):
    with pytest.raises(KeyError, match=r"has no site kind\(s\) \['mixer'\]"):
        MODELS.build(dict(type='mmpetl.RepAdapterBackbone', backbone=vit_cfg,
                          sites=('attn', 'mixer')))
    with pytest.raises(KeyError, match='no attach sites are known'):
        MODELS.build(dict(type='mmpetl.RepAdapterBackbone',
                          backbone=dict(type='mmpretrain.ResNet', depth=18)))
    with pytest.raises(ValueError, match='match no module'):
        MODELS.build(dict(type='mmpetl.RepAdapterBackbone', backbone=vit_cfg,
                          targets=dict(attn=r'nothing\.here')))


def test_a_method_must_implement_the_protocol(vit_cfg):
    from mmpetl.models import AdapterBackbone

    class NoAffine(MergeableAdapter):
        pass

    class NoBuildAdapter(AdapterBackbone):
        pass

    with pytest.raises(TypeError, match='affine'):
        NoAffine()
    with pytest.raises(TypeError, match='build_adapter'):
        NoBuildAdapter(backbone=vit_cfg)


def test_a_site_or_delta_missing_a_method_cannot_be_built():
    from mmpetl.models import AdaptedSite, InputAffineSite, WeightDelta

    class NoMergedWeight(WeightDelta):

        def forward(self, x, weight, bias):
            return x

    class NoMerged(AdaptedSite):

        def stock_module(self):
            return nn.Identity()

        def describe_fold(self):
            return ''

    class NoRewrap(InputAffineSite):

        def stock_module(self):
            return nn.Identity()

    for cls, missing in ((NoMergedWeight, 'merged_weight'),
                         (NoMerged, 'merged'), (NoRewrap, 'rewrap')):
        with pytest.raises(TypeError, match=missing):
            cls()


@pytest.mark.parametrize('method', ['LoRABackbone', 'FacTBackbone',
                                    'ARCBackbone', 'SSFBackbone'])
def test_randomizer_moves_every_trainable_tensor(method, vit_cfg):
    from tests.support.helpers import randomize_trainable
    model = MODELS.build(dict(type=f'mmpetl.{method}', backbone=vit_cfg))
    before = {n: p.clone() for n, p in model.named_parameters()}
    randomize_trainable(model)
    for name, param in model.named_parameters():
        # Every entry of what trains moves (LoRA's B, FacT's V start at 0);
        # the frozen backbone does not.
        moved = param != before[name]
        assert moved.all() if param.requires_grad else not moved.any(), name


def test_a_method_is_build_adapter_and_its_settings(vit_cfg):
    # The whole of a new input-affine method: its settings and one step.
    from mmpetl.models import AdapterBackbone
    from mmpetl.models.merge import merge_adapters
    from tests.support.helpers import randomize_trainable

    class TinyRepAdapterBackbone(AdapterBackbone):

        def __init__(self, backbone, hidden_dim=4, **kwargs):
            super().__init__(
                backbone, settings=dict(hidden_dim=hidden_dim), **kwargs)

        def build_adapter(self, site):
            return RepAdapter(
                site.in_features, hidden_dim=self.hidden_dim, bias=site.shift)

    model = TinyRepAdapterBackbone(vit_cfg, check_input_shape=(3, 32, 32))
    assert model.sites_checked and len(model.attach_sites) == 4
    assert all(a.down.out_features == 4 for a in model.modules()
               if isinstance(a, RepAdapter))
    randomize_trainable(model).eval()
    inputs = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(
            merge_adapters(model)(inputs)[0], model(inputs)[0],
            rtol=1e-4, atol=1e-5)
