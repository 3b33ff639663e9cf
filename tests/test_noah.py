# Copyright (c) mmpetl contributors. All rights reserved.
"""NOAH: the supernet (forward, gradients, weight entanglement), its
subnets against independently built ones and the reference's formulas, the
evolutionary search (parameter limit, seeds, resume), the retraining config
and merging, and the suite's three stages end to end."""
import copy
import json
import os
import os.path as osp
import random

import pytest
import torch
import torch.nn.functional as F

from mmpetl.apis.reparam import build_model
from mmpetl.fileio.configs import load_config_file
from mmpetl.models import NOAHBackbone
from mmpetl.models.merge import merge_adapters
from mmpetl.models.adapters.noah import SlicedAdapter, SlicedLoRA, quick_gelu
from mmpetl.registry import MODELS
from mmpetl.suites.noah_search import (EvolutionSearch, retrain_config,
                                       run_noah_stages)
from tests.support.helpers import randomize_trainable
from tests.support.tools import run_vtab

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
D, LAYERS = 32, 4
VIT = dict(type='mmpretrain.VisionTransformer',
           arch=dict(embed_dims=D, num_layers=LAYERS, num_heads=2,
                     feedforward_channels=64),
           img_size=32, patch_size=8, drop_path_rate=0.)
SPACE = dict(prompt=dict(dims=(1, 3)), lora=dict(dims=(2, 4)),
             adapter=dict(dims=(1, 5)))


def stock(seed=0):
    torch.manual_seed(seed)
    vit = MODELS.build(copy.deepcopy(VIT))
    with torch.no_grad():
        for param in vit.parameters():
            param.add_(0.1 * torch.randn_like(param))
    return vit


def formula(arch, d=D):
    """Trainable parameters of a subnet: prompts p d, LoRA on qkv
    r (d + 3 d), adapter 2 a d + a + d where a > 0."""
    return sum(p * d + r * 4 * d + (a > 0) * (2 * a * d + a + d)
               for p, r, a in zip(arch['prompt'], arch['lora'],
                                  arch['adapter']))


def test_supernet_trains_the_sampled_subnet_only():
    net = randomize_trainable(NOAHBackbone(stock(), search_space=SPACE))
    assert net.space['lora']['depths'] == (1, 2, 3, 4)  # quarters of 4
    assert net.sizes == dict(prompt=[3] * 4, lora=[4] * 4, adapter=[5] * 4)
    arch = dict(prompt=[3, 1, 0, 0], lora=[2, 4, 2, 0], adapter=[5, 0, 0, 0])
    net.set_arch(arch)
    net.train()
    net.trainable_checked = True  # the first-step check is tested below
    net(torch.randn(2, 3, 32, 32))[0].square().sum().backward()
    loras = net._modules_by_layer()['lora']
    # Weight entanglement: rank 2 trains rows / columns 0-1 of the rank-4
    # factors, nothing else; layer 3 (rank 0) gets no gradient.
    assert loras[0].lora_A.grad[:2].abs().sum() > 0
    assert not loras[0].lora_A.grad[2:].any()
    assert not loras[0].lora_B.grad[:, 2:].any()
    assert loras[1].lora_A.grad.abs().min(dim=1).values.gt(0).all()
    assert loras[3].lora_A.grad is None
    prompts = net.prompts.embeddings
    assert prompts['1'].grad[:1].abs().sum() > 0
    assert not prompts['1'].grad[1:].any()
    assert prompts['2'].grad is None
    assert net.arch_parameters(arch) == formula(arch)
    # The first-step check runs on the largest subnet, then restores it.
    net.check_trainable(torch.randn(1, 3, 32, 32))
    assert net.arch == arch


@torch.no_grad()
def test_subnet_slices_equal_an_independent_subnet_and_the_formulas():
    net = randomize_trainable(NOAHBackbone(stock(), search_space=SPACE))
    arch = net.sample_arch(random.Random(3))
    net.set_arch(arch)
    sub = NOAHBackbone(stock(), arch=arch, dropout=0.)
    mods, sub_mods = net._modules_by_layer(), sub._modules_by_layer()
    for i in range(LAYERS):
        r, a, p = (arch[m][i] for m in ('lora', 'adapter', 'prompt'))
        assert (i in sub_mods['lora']) == bool(r)
        if r:
            sub_mods['lora'][i].lora_A.copy_(mods['lora'][i].lora_A[:r])
            sub_mods['lora'][i].lora_B.copy_(mods['lora'][i].lora_B[:, :r])
        if a:
            big, small = mods['adapter'][i], sub_mods['adapter'][i]
            small.down.weight.copy_(big.down.weight[:a])
            small.down.bias.copy_(big.down.bias[:a])
            small.up.weight.copy_(big.up.weight[:, :a])
            small.up.bias.copy_(big.up.bias)
        if p:
            sub.prompts.embeddings[str(i)].copy_(
                net.prompts.embeddings[str(i)][:p])
    trainable = sum(t.numel() for t in sub.parameters() if t.requires_grad)
    assert trainable == net.arch_parameters(arch) == formula(arch)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    net.double().eval()
    sub.double().eval()
    assert torch.allclose(net(x)[0], sub(x)[0], rtol=0, atol=1e-12)
    # The modules against NOAH's formulas.
    lora = SlicedLoRA(D, 3 * D, 4).double()
    lora.rank = 3
    w, b, h = torch.randn(3 * D, D).double(), torch.randn(3 * D).double(), \
        x.new_empty(5, D).normal_()
    expected = F.linear(h, w + lora.lora_B[:, :3] @ lora.lora_A[:3], b)
    assert torch.allclose(lora.eval()(h, w, b), expected, atol=1e-12)
    adapter = SlicedAdapter(D, 5).double().eval()
    adapter.dim = 2
    hidden = h @ adapter.down.weight[:2].T + adapter.down.bias[:2]
    expected = h + hidden * torch.sigmoid(1.702 * hidden) @ \
        adapter.up.weight[:, :2].T + adapter.up.bias
    assert torch.allclose(adapter(h), expected, atol=1e-12)
    assert torch.equal(quick_gelu(h), h * torch.sigmoid(1.702 * h))


@torch.no_grad()
def test_prompts_follow_the_reference_sequence_rule():
    """Prompts appended after the patches; at a layer with prompts the last
    n_{i-1} tokens (the previous layer's prompts) are replaced, at a layer
    without them the carried ones pass on (a non-prefix arch shows both),
    computed by hand on the stock layers."""
    arch = dict(prompt=[2, 0, 3, 1], lora=[0] * 4, adapter=[0] * 4)
    vit = stock()
    reference = copy.deepcopy(vit)
    reference.eval()  # mmpretrain's train() returns None
    net = randomize_trainable(NOAHBackbone(vit, arch=arch)).eval()
    x = torch.randn(2, 3, 32, 32)
    tokens = reference.patch_embed(x)[0]
    tokens = torch.cat((reference.cls_token.expand(2, -1, -1), tokens), 1)
    tokens = tokens + reference.pos_embed
    previous = 0
    for i, layer in enumerate(reference.layers):
        if arch['prompt'][i]:
            prompts = net.prompts.embeddings[str(i)].expand(2, -1, -1)
            tokens = torch.cat((tokens[:, :tokens.shape[1] - previous],
                                prompts), 1)
        previous = arch['prompt'][i]
        tokens = layer(tokens)
    expected = reference.ln1(tokens)[:, 0]
    assert torch.allclose(net(x)[0], expected, atol=1e-5)
    # Without prompts the supernet's forward is the stock model's.
    net.set_arch(dict(prompt=[0] * 4, lora=[0] * 4, adapter=[0] * 4))
    assert torch.allclose(net(x)[0], reference(x)[0], atol=1e-6)


def _search(seed=0, state_file=None, evaluate=None, **settings):
    net = NOAHBackbone(stock(), search_space=SPACE)
    weights = random.Random(99)
    score = {}  # a fixed random score per (module, layer, dim)

    def synthetic(arch):
        return sum(score.setdefault((m, i, d), weights.random())
                   for m, dims in arch.items() for i, d in enumerate(dims))

    search = EvolutionSearch(
        net.space, LAYERS, net.arch_parameters, evaluate or synthetic,
        state_file, **dict(dict(population=12, select=4, mutation=6,
                                crossover=6, epochs=3, param_limit=1800,
                                seed=seed), **settings))
    return search, search.run(log=lambda line: None)


def test_search_respects_the_limit_and_is_deterministic(tmp_path):
    search, found = _search()
    assert found['evaluated'] == len(search.scores) == 12 * 4
    params = [s['params'] for s in search.scores.values()]
    assert max(params) <= 1800 and found['params'] <= 1800
    assert found['val_top1'] == max(s['top1']
                                    for s in search.scores.values())
    again = _search()[1]
    assert again == found
    assert _search(seed=1)[1]['top'] != found['top']
    # Resumed from its state file, a finished search evaluates nothing.
    state = str(tmp_path / 'state.json')
    first = _search(state_file=state)[1]
    assert first == found

    def never(arch):
        raise AssertionError('a resumed search re-evaluated a subnet')

    assert _search(state_file=state, evaluate=never)[1] == found
    with pytest.raises(ValueError, match='param_limit'):
        _search(param_limit=10, population=2)


def test_retrain_config_builds_the_found_subnet():
    supernet = load_config_file(
        osp.join(ROOT, 'configs/vtab/noah/vit-b16_noah_dtd.py'))
    assert supernet.train_dataloader.dataset.split == 'train800'
    assert supernet.test_dataloader.dataset.split == 'val200'
    assert supernet.train_cfg.max_epochs == 500
    arch = dict(prompt=[1, 0, 0, 0], lora=[4, 2, 0, 0], adapter=[5, 1, 0, 0])
    cfg = retrain_config(supernet, arch)
    assert 'noah' not in cfg and 'model_wrapper_cfg' not in cfg
    assert cfg.model.backbone.arch == arch
    assert 'search_space' not in cfg.model.backbone
    assert [h.type for h in cfg.custom_hooks] == ['mmpetl.ParameterCountHook']
    assert cfg.train_cfg.max_epochs == cfg.max_epochs == 100
    assert cfg.optim_wrapper.optimizer.lr == 1e-3
    assert [cfg[f'{n}_dataloader'].dataset.split for n in
            ('train', 'val', 'test')] == ['train800val200', 'test', 'test']
    cfg.model.backbone.backbone = dict(VIT, init_cfg=None)
    cfg.model.head.in_channels = D
    model = build_model(cfg)
    trained = sum(p.numel() for p in model.backbone.parameters()
                  if p.requires_grad)
    assert trained == formula(arch)
    # The published CIFAR-100 subnet, at ViT-B/16 (the method page's count).
    example = load_config_file(
        osp.join(ROOT, 'configs/vtab/noah/vit-b16_noah-subnet_cifar.py'))
    assert formula(example.model.backbone.arch, 768) == 320_330


@torch.no_grad()
def test_merging_folds_lora_and_refuses_adapters_and_prompts():
    arch = dict(prompt=[0] * 4, lora=[4, 0, 2, 0], adapter=[0] * 4)
    vit = stock()
    net = randomize_trainable(NOAHBackbone(vit, arch=arch)).eval()
    assert net.merge_blockers() == []
    x = torch.randn(2, 3, 32, 32)
    merged = merge_adapters(net)
    assert torch.allclose(merged(x)[0], net(x)[0], atol=1e-5)
    blocked = NOAHBackbone(stock(), arch=dict(
        prompt=[1, 0, 0, 0], lora=[4, 0, 0, 0], adapter=[0, 2, 0, 0]))
    blockers = blocked.merge_blockers()
    assert len(blockers) == 2 and all('\n' not in b for b in blockers)
    assert "NOAH's adapter" in blockers[0] and 'layers.1.' in blockers[0]
    assert blockers[1].startswith('prompts: NOAH adds visual prompts')
    with pytest.raises(ValueError, match='cannot be'):
        merge_adapters(blocked)


def test_suite_runs_the_three_stages_and_resumes(tmp_path):
    work = tmp_path / 'work'
    out = run_vtab('--methods', 'noah', '--tasks', 'dtd', '--dry-run',
                   '--work-dir', work)
    task = work / 'noah' / 'dtd'
    supernet = json.loads((task / 'supernet' / 'result.json').read_text())
    assert supernet['split'] == 'val'
    found = json.loads((task / 'search' / 'arch.json').read_text())
    assert 0 < found['params'] <= found['param_limit']
    result = json.loads((task / 'result.json').read_text())
    assert result['split'] == 'test' and result['folds'] is False
    assert result['trainable_backbone'] == found['params']
    assert 'noah / dtd: top-1' in out
    retrain = load_config_file(str(task / 'vit-b16_noah-subnet_dtd.py'))
    assert retrain.model.backbone.arch == found['arch']
    # Every stage done: run again, nothing is trained or searched.
    dumped = load_config_file(str(task / 'supernet' / 'vit-b16_noah_dtd.py'))
    outputs = [task / 'supernet' / 'epoch_1.pth', task / 'search' /
               'arch.json', task / 'vit-b16_noah-subnet_dtd.py']
    stamps = [os.stat(p).st_mtime_ns for p in outputs]
    again, path = run_noah_stages(dumped, str(task),
                                  'vit-b16_noah-subnet_dtd.py', quick=True)
    assert [os.stat(p).st_mtime_ns for p in outputs] == stamps
    assert again.model.backbone.arch == found['arch']
    assert path == str(task / 'vit-b16_noah-subnet_dtd.py')


def test_bad_arguments_are_one_line_errors():
    cases = [
        (dict(search_space=SPACE, arch=dict(prompt=[0] * 4)), 'either'),
        (dict(search_space=SPACE, sites=('qkv', )), 'takes no'),
        (dict(search_space=dict(lora=dict(depths=(2, 8)))), 'layer count'),
        (dict(arch=dict(prompt=[1] * 3, lora=[0] * 4, adapter=[0] * 4)),
         'arch.prompt'),
    ]
    for kwargs, words in cases:
        with pytest.raises(ValueError, match=words) as error:
            NOAHBackbone(stock(), **kwargs)
        assert '\n' not in str(error.value)
    net = NOAHBackbone(stock(), search_space=SPACE)
    with pytest.raises(ValueError, match=r'arch.lora: 4 dimensions'):
        net.set_arch(dict(prompt=[0] * 4, lora=[5, 0, 0, 0],
                          adapter=[0] * 4))
