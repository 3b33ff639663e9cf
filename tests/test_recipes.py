# Copyright (c) mmpetl contributors. All rights reserved.
"""The reference recipes in the classification kit (configs/vtab,
configs/fgvc): values transcribed here from the reference code
(luogen1996/RepAdapter, DavidYanAnDe/ARC and its issue #1), checked against
the built configs; timm's epoch-stepped cosine against a real training run;
PIL resizing; the head's init; ARC's reference Swin placement and its
refusal to merge."""
import glob
import json
import math
import os
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from PIL import Image
from torch import nn

from mmpetl.datasets import FGVC_SETS, VTAB1K_TASKS
from mmpetl.models.adapters.arc import ResidualStreamFFN
from mmpetl.registry import MODELS
from mmpetl.suites.task_suite import shrink_for_dry_run, stock_backbone
from tests.support.helpers import (TINY_SWIN, pretrained_cfg,
                                   randomize_trainable)
from tests.support.tools import run_vtab

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
VTAB = osp.join(ROOT, 'configs', 'vtab')
FGVC = osp.join(ROOT, 'configs', 'fgvc')

# luogen1996/RepAdapter configs/repattn/*.yaml
REPATTN_SCALES = {
    'caltech101': 10, 'cifar': 0.1, 'clevr_count': 1, 'clevr_dist': 0.1,
    'diabetic_retinopathy': 0.5, 'dmlab': 5, 'dsprites_loc': 10,
    'dsprites_ori': 5, 'dtd': 0.1, 'eurosat': 5, 'kitti': 1,
    'oxford_flowers102': 0.5, 'oxford_iiit_pet': 0.5, 'patch_camelyon': 0.5,
    'resisc45': 0.1, 'smallnorb_azi': 10, 'smallnorb_ele': 1,
    'sun397': 0.1, 'svhn': 10,
}
# DavidYanAnDe/ARC train_ARC_swin.py: (lr, wd) per task
ARC_SWIN = {
    'cifar': (0.005, 0.01), 'caltech101': (0.003, 0.05),
    'dtd': (5e-3, 5e-2), 'oxford_flowers102': (0.005, 0.00005),
    'oxford_iiit_pet': (0.01, 0.05), 'svhn': (0.01, 0.05),
    'sun397': (0.005, 0.00005), 'eurosat': (0.003, 0),
    'resisc45': (0.01, 0.0), 'patch_camelyon': (0.005, 0.00005),
    'diabetic_retinopathy': (0.005, 0.00005), 'clevr_count': (0.002, 0.05),
    'clevr_dist': (0.001, 0.05), 'dmlab': (0.005, 0.01),
    'kitti': (0.01, 0.0), 'smallnorb_azi': (0.01, 0.005),
    'smallnorb_ele': (0.001, 0.05), 'dsprites_loc': (0.01, 0.0),
    'dsprites_ori': (0.005, 0.0),
}
# DavidYanAnDe/ARC issue #1: (lr, wd, a_drop, v_drop) per set
ARC_FGVC = {
    'cub': (1e-3, 0.05, 0.1, 0.1), 'nabirds': (2e-4, 0.05, 0.1, 0.1),
    'oxford_flowers': (2.5e-3, 0.01, 0.1, 0.1),
    'stanford_dogs': (0.00025, 0.05, 0.1, 0),
    'stanford_cars': (5e-3, 0.05, 0.0, 0.1),
}
FGVC_METHODS = ('repadapter', 'arc', 'lora', 'linear-probe', 'full-finetune')


def config(*parts):
    return Config.fromfile(osp.join(*parts))


class ReferenceCosine:
    """timm's CosineLRScheduler(t_initial=100, warmup_t=10, lr_min=1e-5,
    warmup_lr_init=1e-6, cycle_decay=0.1) as the RepAdapter reference's
    train loop drives it: the learning rate is warmup_lr_init from
    construction, and ``step(ep)`` runs after epoch ``ep``."""

    def __init__(self, base, t_initial=100, warmup_t=10, lr_min=1e-5,
                 warmup_lr_init=1e-6, cycle_decay=0.1, cycle_limit=1):
        self.__dict__.update(locals())
        self.warmup_step = (base - warmup_lr_init) / warmup_t
        self.lr = warmup_lr_init

    def _get_lr(self, t):
        if t < self.warmup_t:
            return self.warmup_lr_init + t * self.warmup_step
        i = t // self.t_initial
        t_curr = t - self.t_initial * i
        if i >= self.cycle_limit:
            return self.lr_min
        lr_max = self.base * self.cycle_decay**i
        return self.lr_min + 0.5 * (lr_max - self.lr_min) * (
            1 + math.cos(math.pi * t_curr / self.t_initial))

    def epoch_values(self, epochs):
        values = []
        for ep in range(epochs):
            values.append(self.lr)  # what epoch `ep` trains at
            self.lr = self._get_lr(ep)  # scheduler.step(ep)
        return values


def test_repadapter_lr_curve_is_the_reference_per_epoch(tmp_path):
    """100 real epochs (tiny model, a few stand-in images, batch 2): every
    iteration's learning rate equals the reference's for its epoch."""
    from mmengine.runner import Runner

    from mmpetl.datasets import write_vtab1k_standin
    cfg = config(VTAB, 'repadapter', 'vit-b16_repadapter_cifar.py')
    assert cfg.train_dataloader.batch_size == 64
    assert cfg.train_dataloader.drop_last is True  # 1000 images: 15 iters
    assert [s.type for s in cfg.param_scheduler] == ['mmpetl.TimmCosineLR']
    assert not cfg.param_scheduler[0].get('convert_to_iter_based', False)
    write_vtab1k_standin(str(tmp_path / 'data'), ['cifar'])
    shrink_for_dry_run(cfg, str(tmp_path / 'data'))
    cfg.train_cfg.max_epochs = 100
    cfg.train_dataloader.batch_size = 2  # several iterations per epoch
    cfg.default_hooks.checkpoint.interval = 100
    cfg.default_hooks.logger.interval = 50
    cfg.custom_hooks = []
    cfg.work_dir = str(tmp_path / 'work')
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    torch.set_num_threads(1)
    with DefaultScope.overwrite_default_scope(cfg.default_scope):
        runner = Runner.from_cfg(cfg)
        runner.train()
    per_iter = list(runner.message_hub.get_scalar('train/lr').data[0])
    iters_per_epoch = len(runner.train_dataloader)
    assert iters_per_epoch >= 2 and len(per_iter) == 100 * iters_per_epoch
    expected = ReferenceCosine(base=1e-3).epoch_values(100)
    actual = [per_iter[e * iters_per_epoch:(e + 1) * iters_per_epoch]
              for e in range(100)]
    for epoch, (values, ref) in enumerate(zip(actual, expected)):
        assert max(abs(v - ref) for v in values) < 1e-9, (epoch, values, ref)
    # The reference's shape: epochs 0 and 1 at 1e-6, the peak is not 1e-3
    # (the cosine already runs during warm-up), the end just above 1e-5.
    assert expected[0] == expected[1] == 1e-6
    assert expected[10] < 1e-3 and expected[11] == max(expected)
    assert 1e-5 < expected[-1] < 1.1e-5


def test_vtab_recipes_carry_the_reference_values():
    repadapter = config(VTAB, 'repadapter', 'vit-b16_repadapter_dtd.py')
    arc = config(VTAB, 'arc', 'vit-b16_arc_dtd.py')
    # Drop-path: RepAdapter's timm ViT 0.1; ARC's ViT has none.
    assert stock_backbone(repadapter.model).drop_path_rate == 0.1
    assert stock_backbone(arc.model).drop_path_rate == 0.
    # drop_last: RepAdapter's loader drops the last batch, ARC's does not.
    assert repadapter.train_dataloader.drop_last is True
    assert arc.train_dataloader.drop_last is False
    assert arc.model.backbone.dropout == 0.1
    for cfg in (repadapter, arc):
        load, resize = cfg.train_dataloader.dataset.pipeline[:2]
        assert load.imdecode_backend == 'pillow'
        assert (resize.backend, resize.interpolation, resize.scale) == \
            ('pillow', 'bicubic', (224, 224))
    assert repadapter.model.head.init_cfg is None
    for task in VTAB1K_TASKS:
        cfg = config(VTAB, 'repattn', f'vit-b16_repattn_{task}.py')
        assert cfg.model.backbone.sites == ('attn', )
        assert cfg.model.backbone.scale == REPATTN_SCALES[task]
        assert cfg.model.head.num_classes == VTAB1K_TASKS[task].num_classes


def test_swin_b_configs_carry_the_reference_values():
    for task, (lr, wd) in ARC_SWIN.items():
        arc = config(VTAB, 'arc', f'swin-b_arc_{task}.py')
        assert (arc.optim_wrapper.optimizer.lr,
                arc.optim_wrapper.optimizer.weight_decay) == (lr, wd)
        assert arc.model.backbone.dropout == 0.5
        assert arc.model.backbone.get('swin_ffn_placement',
                                      'foldable') == 'foldable'
        assert arc.model.head.init_cfg.type == 'TruncNormal'
        repadapter = config(VTAB, 'repadapter', f'swin-b_repadapter_{task}.py')
        assert repadapter.model.backbone.scale == \
            VTAB1K_TASKS[task].repadapter_scale
        for cfg in (arc, repadapter):
            stock = stock_backbone(cfg.model)
            assert (stock.type, stock.arch, stock.drop_path_rate) == \
                ('SwinTransformer', 'base', 0.1)
            assert cfg.model.neck.type == 'GlobalAveragePooling'
            assert cfg.model.head.in_channels == 1024
            assert cfg.model.head.num_classes == \
                VTAB1K_TASKS[task].num_classes
            assert cfg.train_dataloader.dataset.task == task
    assert sorted(glob.glob(osp.join(VTAB, 'arc', 'swin-b_*.py')) +
                  glob.glob(osp.join(VTAB, 'repadapter', 'swin-b_*.py'))) == \
        sorted(osp.join(VTAB, m, f'swin-b_{m}_{t}.py')
               for m in ('arc', 'repadapter') for t in VTAB1K_TASKS)


def test_fgvc_configs_carry_the_reference_values():
    for method in FGVC_METHODS:
        for name, info in FGVC_SETS.items():
            cfg = config(FGVC, method, f'vit-b16_{method}_{name}.py')
            assert cfg.model.head.num_classes == info.num_classes
            for loader, split in (('train_dataloader', 'train'),
                                  ('val_dataloader', 'test'),
                                  ('test_dataloader', 'test')):
                dataset = cfg[loader].dataset
                assert (dataset.type, dataset.name, dataset.split) == \
                    ('mmpetl.FGVC', name, split)
                assert 'task' not in dataset
            train = [t.type for t in cfg.train_dataloader.dataset.pipeline]
            assert train == ['LoadImageFromFile', 'ResizeEdge', 'RandomCrop',
                             'RandomFlip', 'PackInputs']
            if method == 'arc':
                lr, wd, a_drop, v_drop = ARC_FGVC[name]
                assert cfg.optim_wrapper.optimizer.lr == lr
                assert cfg.optim_wrapper.optimizer.weight_decay == wd
                assert cfg.model.backbone.dropout == a_drop
                assert stock_backbone(cfg.model).drop_rate == v_drop
                assert stock_backbone(cfg.model).drop_path_rate == 0
                assert cfg.train_dataloader.batch_size == 32
            else:
                assert cfg.optim_wrapper.optimizer.lr == 1e-3
                assert cfg.train_dataloader.batch_size == 64
    assert sorted(f for m in FGVC_METHODS for f in glob.glob(
        osp.join(FGVC, m, 'vit-b16_*.py'))) == sorted(
        osp.join(FGVC, m, f'vit-b16_{m}_{n}.py') for m in FGVC_METHODS
        for n in FGVC_SETS)


def test_resize_is_pil_bicubic(tmp_path):
    """The configs' pipeline gives PIL's antialiased bicubic resize of a
    PIL-decoded JPEG, bit for bit; mmcv's cv2 default does not."""
    from mmcv.transforms import Compose
    from skimage import data
    path = str(tmp_path / 'chelsea.jpg')
    Image.fromarray(data.chelsea()).save(path, quality=90)  # 451x300
    cfg = config(VTAB, 'repadapter', 'vit-b16_repadapter_kitti.py')
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        ours = Compose(cfg.train_dataloader.dataset.pipeline[:2])(
            dict(img_path=path))['img']
    reference = np.asarray(Image.open(path).convert('RGB').resize(
        (224, 224), Image.BICUBIC))[..., ::-1]  # BGR, as mmcv loads
    assert ours.shape == (224, 224, 3)
    assert np.array_equal(ours, reference)
    cv2_cfg = [dict(type='LoadImageFromFile'),
               dict(type='Resize', scale=(224, 224), interpolation='bicubic')]
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        cv2 = Compose(cv2_cfg)(dict(img_path=path))['img']
    assert np.abs(cv2.astype(float) - reference).mean() > 1


@pytest.mark.parametrize('relpath,expected', [
    (('repadapter', 'vit-b16_repadapter_cifar.py'), 'pytorch'),
    (('arc', 'vit-b16_arc_cifar.py'), 'zeros'),
    (('arc', 'swin-b_arc_cifar.py'), 'trunc_normal'),
])
def test_head_init(relpath, expected):
    """RepAdapter: PyTorch's nn.Linear init (timm's reset_classifier); ARC:
    zeros on ViT, timm's trunc-normal(0.02) on Swin."""
    cfg = config(VTAB, *relpath)
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        torch.manual_seed(0)
        head = MODELS.build(cfg.model.head)
        head.init_weights()
    weight, bias = head.fc.weight, head.fc.bias
    if expected == 'pytorch':
        torch.manual_seed(0)
        reference = nn.Linear(head.fc.in_features, head.fc.out_features)
        assert torch.equal(weight, reference.weight)
        assert torch.equal(bias, reference.bias)
        assert bias.abs().max() > 0
    elif expected == 'zeros':
        assert not weight.any() and not bias.any()
    else:
        assert 0.018 < float(weight.std()) < 0.022 and not bias.any()


def _swin_arc(swin_cfg, placement, dropout=0.):
    torch.manual_seed(0)
    model = MODELS.build(
        dict(type='mmpetl.ARCBackbone', backbone=swin_cfg, hidden_dim=4,
             dropout=dropout, swin_ffn_placement=placement))
    randomize_trainable(model).eval()
    return model


def test_arc_reference_swin_placement(swin_cfg):
    """Each block computes x' = a(x) on the residual stream after the
    attention, then x' + FFN(norm2(x')), with the stock norm2 and FFN."""
    reference = _swin_arc(swin_cfg, 'reference')
    foldable = _swin_arc(swin_cfg, 'foldable')
    stock = MODELS.build(swin_cfg)
    stock.init_weights()
    stock.eval()  # not chained: Swin's train() returns None
    blocks = [(name, m) for name, m in stock.named_modules()
              if type(m).__name__ == 'SwinBlock']
    assert len(blocks) == 4
    hw = (9, 9)
    x = torch.randn(2, 81, 16)
    for name, block in blocks[:2]:  # stage 0: width 16
        ours = reference.backbone.get_submodule(name)
        assert isinstance(ours.ffn, ResidualStreamFFN)
        assert isinstance(ours.norm2, nn.Identity)
        adapter = ours.ffn.adapter
        with torch.no_grad():
            # the attention (with its qkv adapter) as the model has it
            h = ours.attn(ours.norm1(x), hw) + x
            h = adapter(h)
            expected = block.ffn(block.norm2(h), identity=h)
            assert torch.allclose(ours(x, hw), expected, atol=1e-6)
            # and not what the foldable placement computes
            other = foldable.backbone.get_submodule(name)
            assert not torch.allclose(other(x, hw), expected, atol=1e-3)
    # Same adapters, same trainable parameters as the foldable placement.
    count = [sum(p.numel() for p in m.parameters() if p.requires_grad)
             for m in (reference, foldable)]
    assert count[0] == count[1] > 0
    reference.train()
    reference(torch.randn(2, 3, 72, 72))[-1].sum().backward()
    for block in reference.backbone.modules():
        if isinstance(block, ResidualStreamFFN):
            assert block.adapter.scale.grad.abs().sum() > 0
            assert block.norm.weight.grad is None  # frozen


def test_reference_placement_is_refused_by_reparam(tmp_path, swin_cfg):
    """tools/reparam.py: one line naming the placement, exit 2, nothing
    written; the library merge raises and leaves the model alone."""
    from mmpetl.models.merge import merge_adapters
    model = _swin_arc(swin_cfg, 'reference')
    with pytest.raises(ValueError, match='cannot be folded'):
        merge_adapters(model)
    assert any(isinstance(m, ResidualStreamFFN) for m in model.modules())
    cfg = Config(dict(
        default_scope='mmpretrain',
        model=dict(
            type='ImageClassifier',
            backbone=dict(type='mmpetl.ARCBackbone', backbone=swin_cfg,
                          hidden_dim=4, swin_ffn_placement='reference'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=32))))
    cfg_path = str(tmp_path / 'arc_swin_reference.py')
    cfg.dump(cfg_path)
    ckpt = tmp_path / 'adapter.pth'
    torch.save(dict(state_dict={
        f'backbone.{k}': v for k, v in model.state_dict().items()}), ckpt)
    out = tmp_path / 'merged.pth'
    result = subprocess.run(
        [sys.executable, 'tools/reparam.py', cfg_path, str(ckpt), str(out)],
        cwd=ROOT, capture_output=True, text=True,
        env=dict(os.environ, PYTHONPATH=ROOT))
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "swin_ffn_placement='reference'" in lines[0]
    assert 'cannot be folded' in lines[0]
    assert not out.exists()


def test_reference_placement_only_for_swin(vit_cfg):
    with pytest.raises(ValueError, match='Swin backbones'):
        MODELS.build(dict(type='mmpetl.ARCBackbone', backbone=vit_cfg,
                          swin_ffn_placement='reference'))
    with pytest.raises(ValueError, match='swin_ffn_placement must be'):
        MODELS.build(dict(type='mmpetl.ARCBackbone', backbone=vit_cfg,
                          swin_ffn_placement='residual'))


def test_swin_b_and_repattn_configs_train(tmp_path):
    """Dry runs of the new per-task files (tiny Swin / ViT of the same
    type): Swin-B RepAdapter and ARC (foldable: merged checkpoint; the
    reference placement: a warning and no merged checkpoint), and the
    attention-only RepAdapter."""
    out = run_vtab('--prefix', 'swin-b', '--methods', 'repadapter', 'arc',
                    '--tasks', 'dtd', '--dry-run', '--work-dir',
                    tmp_path / 'swin')
    assert 'arc / dtd: top-1' in out and 'repadapter / dtd: top-1' in out
    assert (tmp_path / 'swin' / 'arc' / 'dtd' / 'epoch_1_merged.pth').is_file()
    out = run_vtab('--prefix', 'swin-b', '--methods', 'arc', '--tasks',
                    'kitti', '--dry-run', '--work-dir', tmp_path / 'ref',
                    '--cfg-options',
                    'model.backbone.swin_ffn_placement=reference')
    assert 'arc / kitti: top-1' in out
    kitti = tmp_path / 'ref' / 'arc' / 'kitti'
    assert not (kitti / 'epoch_1_merged.pth').exists()
    log = open(glob.glob(str(kitti / '*' / '*.log'))[0]).read()
    assert 'No merged checkpoint written' in log
    out = run_vtab('--methods', 'repattn', '--tasks', 'svhn', '--dry-run',
                    '--work-dir', tmp_path / 'repattn')
    assert 'repattn / svhn: top-1' in out


def write_fgvc_standin(root):
    """Every set's folder with one 8x8 JPEG per class in train.json (the
    class count is checked) and a few in test.json."""
    rng = np.random.default_rng(0)
    for info in FGVC_SETS.values():
        images = osp.join(root, info.folder, info.image_dir)
        os.makedirs(images, exist_ok=True)
        entries = {}
        for label in range(info.num_classes):
            name = f'{label:04d}.jpg'
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), np.uint8)).save(
                osp.join(images, name))
            entries[name] = label + 1  # 1-based ids, as some sets have
        test = dict(list(entries.items())[:8])
        for split, content in (('train', entries), ('val', test),
                               ('test', test)):
            with open(osp.join(root, info.folder, f'{split}.json'), 'w') as f:
                json.dump(content, f)


def test_fgvc_configs_train(tmp_path):
    write_fgvc_standin(str(tmp_path / 'fgvc'))
    common = ('--config-dir', FGVC, '--dry-run', '--data-root',
              tmp_path / 'fgvc')
    # Every method on the two sets whose image folders are assumed (the
    # other per-set files differ from these in the name and, for ARC, in
    # the values checked above).
    sets = ('oxford_flowers', 'stanford_cars')
    out = run_vtab('--config-dir', FGVC, '--dry-run', '--data-root',
                    tmp_path / 'fgvc', '--methods', *FGVC_METHODS,
                    '--tasks', *sets, '--work-dir', tmp_path / 'work')
    for method in FGVC_METHODS:
        for name in sets:
            assert f'{method} / {name}: top-1' in out
