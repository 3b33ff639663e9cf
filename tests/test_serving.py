# Copyright (c) mmpetl contributors. All rights reserved.
"""AdapterSwitcher: several tasks on one frozen backbone; switching folds
from the untouched originals (bit-identical when switching back, equal to
each task's merged checkpoint), and holds the backbone once."""
import pytest
import torch
from mmengine.config import Config

from mmpetl.apis.reparam import build_model, reparameterize_checkpoint
from mmpetl.apis.serving import AdapterSwitcher
from mmpetl.fileio.checkpoint_io import CheckpointError
from mmpetl.models import InputAffineSite, adapted_sites
from tests.support.helpers import (TINY_VIT, pretrained_cfg,
                                   randomize_trainable)

TASKS = dict(
    rep=dict(type='mmpetl.RepAdapterBackbone', scale=1.0, classes=3),
    arc=dict(type='mmpetl.ARCBackbone', hidden_dim=8, classes=5),
    rep_attn=dict(type='mmpetl.RepAdapterBackbone', sites='attn', classes=2),
    # Weight delta: folds through merged() at each switch (MergedFold).
    lora=dict(type='mmpetl.LoRABackbone', classes=4))


def task_config(backbone, spec):
    spec = dict(spec)
    classes = spec.pop('classes')
    return Config(dict(
        default_scope='mmpretrain',
        model=dict(
            type='ImageClassifier',
            backbone=dict(spec, backbone=backbone),
            head=dict(type='LinearClsHead', num_classes=classes,
                      in_channels=32))))


@pytest.fixture(scope='module')
def tasks(tmp_path_factory):
    root = tmp_path_factory.mktemp('serving')
    vit = pretrained_cfg(TINY_VIT, root / 'vit.pth', perturb=0.05)
    out = {}
    for seed, (name, spec) in enumerate(TASKS.items()):
        config = root / f'{name}.py'
        task_config(vit, spec).dump(str(config))
        torch.manual_seed(seed)
        model = randomize_trainable(build_model(Config.fromfile(config)),
                                    seed)
        checkpoint = root / f'{name}.pth'
        torch.save(dict(state_dict=model.state_dict()), checkpoint)
        merged = root / f'{name}_merged.pth'
        stock = root / f'{name}_stock.py'
        reparameterize_checkpoint(str(config), str(checkpoint), str(merged),
                                  out_config=str(stock))
        out[name] = dict(config=str(config), checkpoint=str(checkpoint),
                         merged=str(merged), stock=str(stock))
    return out


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_switching_is_bit_identical_and_equals_merged(tasks):
    switcher = AdapterSwitcher()
    for name, spec in tasks.items():
        switcher.add_task(name, spec['config'], spec['checkpoint'])
    originals = {k: v.clone() for k, v in switcher._originals.items()}
    inputs = torch.randn(2, 3, 32, 32)
    first = {}
    for name in ('rep', 'arc', 'rep_attn', 'lora') * 2:
        model = switcher.switch(name)
        assert switcher.active == name
        state = snapshot(model)
        if name not in first:
            first[name] = state
            stock = build_model(Config.fromfile(tasks[name]['stock']))
            merged = torch.load(tasks[name]['merged'],
                                weights_only=False)['state_dict']
            stock.load_state_dict(merged, strict=True)
            assert state.keys() == merged.keys()
            for key, value in merged.items():
                torch.testing.assert_close(state[key], value, rtol=1e-6,
                                           atol=0)
            # ... and computes the adapter model it was folded from (a fold
            # that dropped a delta would equal its merged file, not this).
            adapter = build_model(Config.fromfile(tasks[name]['config']))
            adapter.load_state_dict(
                torch.load(tasks[name]['checkpoint'],
                           weights_only=False)['state_dict'])
            with torch.no_grad():
                ours = model(inputs, mode='tensor')
                torch.testing.assert_close(
                    ours, stock.eval()(inputs, mode='tensor'))
                torch.testing.assert_close(
                    ours, adapter.eval()(inputs, mode='tensor'))
        else:  # switching back: bit-identical
            assert state.keys() == first[name].keys()
            assert all(torch.equal(state[k], first[name][k]) for k in state)
    # The originals were never written.
    for key, value in switcher._originals.items():
        assert torch.equal(value, originals[key])
    # Tasks differ where their adapters differ.
    assert not torch.equal(first['rep']['backbone.layers.0.attn.qkv.weight'],
                           first['arc']['backbone.layers.0.attn.qkv.weight'])
    # rep_attn adapts no FFN: its fc1 holds the original weight.
    key = 'backbone.layers.0.ffn.layers.0.0.weight'
    assert torch.equal(first['rep_attn'][key], originals[key])
    # Added first, rep_attn gets the fc1 sites that rep adds later (their
    # originals); rep folds them as in the switcher above.
    later = AdapterSwitcher()
    for name in ('rep_attn', 'rep'):
        later.add_task(name, tasks[name]['config'], tasks[name]['checkpoint'])
    for name in ('rep', 'rep_attn', 'rep'):
        state = snapshot(later.switch(name))
        assert all(torch.equal(state[k], first[name][k]) for k in state)


def test_memory_holds_the_backbone_once(tasks):
    switcher = AdapterSwitcher()
    for name, spec in tasks.items():
        switcher.add_task(name, spec['config'], spec['checkpoint'])
    memory = switcher.memory()
    stock = build_model(Config.fromfile(tasks['rep']['stock']))
    backbone = sum(t.numel() * t.element_size()
                   for t in (*stock.backbone.parameters(),
                             *stock.backbone.buffers()))
    assert memory['backbone'] == backbone
    # Live storage: the linears switches write (qkv and fc1 of each layer).
    sites = [m for n, m in stock.backbone.named_modules()
             if n.endswith(('attn.qkv', 'ffn.layers.0.0'))]
    assert memory['live'] == sum(
        p.numel() * p.element_size() for m in sites for p in m.parameters())
    # Per task: adapters, ARC's shared projection, head; prepared per site
    # (a linear (out, in), rank r): W U (out, r), V^T (r, in), folded bias.
    # Every task here has r = 8 (RepAdapter's default, ARC's hidden_dim).
    expected_tasks = expected_folds = 0
    for spec in tasks.values():
        model = build_model(Config.fromfile(spec['config']))
        expected_tasks += sum(p.numel() * p.element_size()
                              for p in model.parameters() if p.requires_grad)
        for site in adapted_sites(model).values():
            if not isinstance(site, InputAffineSite):
                continue  # LoRA: merged at each switch, nothing prepared
            (out, width), rank = site.weight.shape, 8
            expected_folds += (out * rank + rank * width + out) * 4
    assert memory['tasks'] == expected_tasks
    assert memory['folds'] == expected_folds
    assert memory['total'] == (backbone + memory['live'] + expected_tasks +
                               expected_folds)


def test_switcher_refuses_bad_tasks(tasks, tmp_path):
    switcher = AdapterSwitcher()
    spec = tasks['rep']
    switcher.add_task('rep', spec['config'], spec['checkpoint'])
    with pytest.raises(CheckpointError, match='already loaded'):
        switcher.add_task('rep', spec['config'], spec['checkpoint'])
    with pytest.raises(CheckpointError, match='merged checkpoint'):
        switcher.add_task('m', spec['config'], spec['merged'])
    with pytest.raises(CheckpointError, match='does not match'):
        switcher.add_task('x', tasks['arc']['config'], spec['checkpoint'])
    # Another pre-trained backbone.
    other = pretrained_cfg(TINY_VIT, tmp_path / 'other.pth', seed=7)
    config = tmp_path / 'other.py'
    task_config(other, TASKS['rep']).dump(str(config))
    with pytest.raises(CheckpointError, match='trained on the backbone of'):
        switcher.add_task('other', str(config), spec['checkpoint'])
    with pytest.raises(KeyError, match="no task 'nope'"):
        switcher.switch('nope')
    assert switcher.tasks == ['rep']


def test_switching_video_vit_with_bias_sink(tmp_path):
    """VideoMAE attention (AdaptedModule, q/v bias sink): switching equals
    the merged checkpoint and switching back is bit-identical."""
    from tests.support.video import TINY_VIDEO_VIT, video_pretrained_cfg
    vit = video_pretrained_cfg(TINY_VIDEO_VIT, tmp_path / 'vit.pth')
    switcher, merged = AdapterSwitcher(), {}
    for seed, method in enumerate(('RepAdapterBackbone', 'ARCBackbone')):
        cfg = Config(dict(
            default_scope='mmaction',
            model=dict(
                type='Recognizer3D',
                backbone=dict(type=f'mmpetl.{method}', backbone=vit),
                cls_head=dict(type='TimeSformerHead', num_classes=3 + seed,
                              in_channels=32))))
        config, checkpoint = tmp_path / f'{method}.py', tmp_path / 'a.pth'
        cfg.dump(str(config))
        model = randomize_trainable(build_model(Config.fromfile(config)),
                                    seed)
        torch.save(dict(state_dict=model.state_dict()), checkpoint)
        out = tmp_path / f'{method}_merged.pth'
        reparameterize_checkpoint(str(config), str(checkpoint), str(out))
        merged[method] = torch.load(out, weights_only=False)['state_dict']
        switcher.add_task(method, str(config), str(checkpoint))
    first = {}
    for method in ('RepAdapterBackbone', 'ARCBackbone', 'RepAdapterBackbone'):
        state = snapshot(switcher.switch(method))
        assert state.keys() == merged[method].keys()
        for key, value in merged[method].items():
            torch.testing.assert_close(state[key], value, rtol=1e-6, atol=0)
        if method in first:
            assert all(torch.equal(state[k], first[method][k])
                       for k in state)
        first[method] = state
    assert not torch.equal(first['RepAdapterBackbone']['backbone.blocks.0.'
                                                       'attn.q_bias'],
                           switcher._originals['backbone.blocks.0.attn.'
                                               'q_bias'])
