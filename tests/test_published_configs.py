# Copyright (c) mmpetl contributors. All rights reserved.
"""Every shipped config family starts from the file its users download.

One test per family: method configs of the family (every method once
across the families), at tiny size (arch overridden, the pre-trained file
a fixture in the published layout of tests/support/published.py,
converted by the command docs/en/pretrained.md names), build with every
frozen tensor proved loaded, train one step, and where they fold the fold
equals the unmerged model. ``MMPETL_REAL_SIZE=1`` builds the ViT-B/16
and Swin-B families from files of the published size instead (opt-in:
minutes and GBs)."""
import copy
import glob
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config, ConfigDict
from mmengine.optim import OptimWrapper
from mmengine.registry import DefaultScope

from mmpetl.benchmarks.methods import METHODS
from mmpetl.apis.reparam import build_model, max_relative_difference
from mmpetl.model_converters.videomae import convert_videomae_checkpoint
from mmpetl.models import FrozenBackbone
from mmpetl.models.merge import merge_adapters, merge_blockers
from tests.support.dense import (TINY_VOC_SWIN, tiny_cascade_config,
                                 tiny_retinanet_config, tiny_upernet_config)
from tests.support.helpers import TINY_DET_SWIN, TINY_SEG_SWIN
from tests.support.published import (TINY, converted_vit_npz, official_swin,
                                     real_size, videomae_pretrain)
from tests.support.helpers import randomize_trainable
from tests.support.tools import ROOT

#: The methods of each family that build from the family's fixture, train
#: one step and fold (the load check is the shared wrapper's: every method
#: once across the families, on each loader).
TRAINED = dict(
    quickstart=('repadapter', 'dora'),
    vtab=('lora', 'ssf', 'fact-tk', 'houlsby', 'vpt-shallow', 'pfeiffer'),
    vtab_swin=('arc', ),
    fgvc=('arc', 'convpass', 'fact-tt'),
    fewshot=('vpt-deep', ),
    examples=('repadapter', ),
    video=('repadapter', 'arc', 'linear-probe'),
    ade20k=('mona', 'ln-tuning', 'partial-1'),
    coco=('e3va', 'lorand'),
    voc=('bitfit', 'adaptformer', 'frozen', 'lora'),
)


def _configs(family, pattern='*/*.py'):
    """One config per method of ``family`` (its first, sorted)."""
    chosen = {}
    for path in sorted(glob.glob(osp.join(ROOT, 'configs', family, pattern))):
        if '_base_' in path:
            continue
        method = osp.basename(osp.dirname(path)) \
            if pattern.startswith('*/') else _method_of(osp.basename(path))
        chosen.setdefault(method, path)
    return chosen


def _method_of(name):
    """The method a shipped config's file name names."""
    words = osp.splitext(name)[0].split('_')
    return next(w for w in words if w in _METHODS)


#: Every method's name as shipped config file names spell it.
_METHODS = {*METHODS, 'e3va', 'frozen', 'full-ft', 'full-finetune',
            'linear-probe'}


def _stock_node(cfg):
    node = cfg.model.backbone
    while 'backbone' in node:
        node = node.backbone
    return node


def _pretrained(path, prefix=None):
    init_cfg = dict(type='Pretrained', checkpoint=str(path))
    if prefix:
        init_cfg['prefix'] = prefix
    return init_cfg


def _build(cfg):
    with DefaultScope.overwrite_default_scope(cfg.get('default_scope')):
        return build_model(cfg)


def _assert_loaded(model, trained_new=()):
    wrappers = [m for m in model.modules() if isinstance(m, FrozenBackbone)]
    for wrapper in wrappers:
        # The toolbox's new layers, and only they, lack a file value; they
        # train unless the backbone runs without autograd (E3VA).
        assert sorted(wrapper.new_layers) == sorted(trained_new)
        assert wrapper.trained_new_layers() == (
            wrapper.new_layers if wrapper.backprop_through_backbone else {})
    return wrappers


def _train_step_and_fold(model, data, inputs):
    """One SGD step on ``data``: the trainable parameters move, the frozen
    ones do not; then (adapters moved away from their init) the fold
    equals the unmerged backbone on ``inputs``."""
    params = dict(model.named_parameters())
    trainable = {n for n, p in params.items() if p.requires_grad}
    before = {n: p.detach().clone() for n, p in params.items()}
    optimizer = OptimWrapper(
        torch.optim.SGD([params[n] for n in trainable], lr=0.1))
    model.train()
    with DefaultScope.overwrite_default_scope(None):
        losses = model.train_step(data, optimizer)
    assert all(torch.isfinite(v).all() for v in losses.values())
    moved = {n for n, p in params.items() if not torch.equal(p, before[n])}
    assert moved and moved <= trainable
    wrapper = model.backbone
    if merge_blockers(model):
        return None
    randomize_trainable(wrapper)
    merged = merge_adapters(model)
    return max_relative_difference(wrapper, merged.backbone, inputs)


def _run_family(family, configs, tiny, data, inputs, trained_new=()):
    """Build the configs of ``family``'s methods in :data:`TRAINED` at tiny
    size (``tiny(cfg, method)`` changes it in place), train and fold."""
    assert set(TRAINED[family]) <= set(configs), (family, sorted(configs))
    for method, path in configs.items():
        if method not in TRAINED[family]:
            continue
        cfg = Config.fromfile(path)
        tiny(cfg, method)
        model = _build(cfg)
        wrappers = _assert_loaded(model, trained_new)
        if 'full-f' not in method:
            assert wrappers, path
        error = _train_step_and_fold(model, data(), inputs)
        assert error is None or error < 1e-5, (path, error)


# ---------------------------------------------------------------- images


def _cls_data(num_classes, size=32, frames=None):
    from mmpretrain.structures import DataSample
    shape = (3, size, size) if frames is None else (1, 3, frames, size, size)
    generator = torch.Generator().manual_seed(0)
    return dict(inputs=[
        torch.randint(0, 256, shape, generator=generator, dtype=torch.uint8)
        for _ in range(2)
    ],
                data_samples=[
                    DataSample().set_gt_label(i % num_classes)
                    for i in range(2)
                ])


def _tiny_vit(cfg, path, prefix='backbone.'):
    node = _stock_node(cfg)
    vit = TINY['vit']
    node.update(arch=dict(embed_dims=vit['embed_dims'],
                          num_layers=vit['num_layers'],
                          num_heads=vit['num_heads'],
                          feedforward_channels=vit['mlp_dims']),
                img_size=vit['img_size'],
                patch_size=vit['patch_size'],
                init_cfg=_pretrained(path, prefix))
    cfg.model.head.in_channels = vit['embed_dims']


@pytest.fixture(scope='module')
def vit_file(tmp_path_factory):
    """Google's ViT .npz, converted by tools/model_converters/
    vit_npz2mmpretrain.py's function."""
    root = tmp_path_factory.mktemp('vit')
    return converted_vit_npz(str(root / 'vit-b16_in21k.pth'), **TINY['vit'])


def test_quickstart_from_the_pretraining_checkpoint(tmp_path):
    # The quick start's file is tools/train.py's own checkpoint of the
    # pre-training config: a whole classifier, `state_dict` nesting, with
    # meta, message hub and optimizer state.
    from tests.support.published import model_zoo
    pretrain = Config.fromfile(
        osp.join(ROOT, 'configs/quickstart/vit-tiny_digits0-4_pretrain.py'))
    path = tmp_path / 'epoch_30.pth'
    model_zoo(path,
              dict(pretrain.model.backbone,
                   type='mmpretrain.VisionTransformer'),
              head={
                  'head.fc.weight': (5, 64),
                  'head.fc.bias': (5, )
              })

    def tiny(cfg, method):
        _stock_node(cfg).init_cfg.checkpoint = str(path)

    _run_family('quickstart', _configs('quickstart', '*_digits5-9_*.py'), tiny,
                lambda: _cls_data(5), torch.randn(2, 3, 32, 32))


def test_vtab_from_google_npz_and_official_swin(vit_file, tmp_path):
    configs = _configs('vtab', '*/vit-b16_*.py')

    def tiny(cfg, method):
        _tiny_vit(cfg, vit_file)

    _run_family('vtab', configs, tiny, lambda: _cls_data(10),
                torch.randn(2, 3, 32, 32))
    # Swin-B: the official file, converted as the classification page says
    # (mmseg's swin2mmseg, then the last norm renamed after its stage).
    swin_file = tmp_path / 'swin-b_in22k.pth'
    state = _swin2mmseg(
        official_swin(tmp_path / 'official.pth', **TINY['swin']))
    last = len(TINY['swin']['depths']) - 1
    state = {
        k.replace('norm.', f'norm{last}.') if k.startswith('norm.') else k: v
        for k, v in state.items()
    }
    torch.save(state, swin_file)

    def tiny_swin(cfg, method):
        swin = TINY['swin']
        _stock_node(cfg).update(arch=dict(embed_dims=swin['embed_dims'],
                                          depths=swin['depths'],
                                          num_heads=swin['num_heads']),
                                img_size=swin['img_size'],
                                out_indices=(last, ),
                                init_cfg=_pretrained(swin_file))
        cfg.model.head.in_channels = swin['embed_dims'] * 2**last

    _run_family('vtab_swin', _configs('vtab', '*/swin-b_*.py'), tiny_swin,
                lambda: _cls_data(10, size=56), torch.randn(2, 3, 56, 56))


def test_fgvc_fewshot_and_examples_from_google_npz(vit_file):

    def tiny(cfg, method):
        _tiny_vit(cfg, vit_file)
        if cfg.model.get('train_cfg'):  # few-shot: Mixup / CutMix
            cfg.model.data_preprocessor = dict(
                cfg.get('data_preprocessor', {}),
                num_classes=cfg.model.head.num_classes)

    for family in ('fgvc', 'fewshot', 'examples'):
        pattern = '*.py' if family == 'examples' else '*/*.py'
        _run_family(family, _configs(family, pattern), tiny,
                    lambda: _cls_data(10), torch.randn(2, 3, 32, 32))


def _swin2mmseg(official):
    """mmseg's own converter (installed with it) on an official state
    dict."""
    import mmseg
    spec = importlib.util.spec_from_file_location(
        'swin2mmseg',
        osp.join(osp.dirname(mmseg.__file__),
                 '.mim/tools/model_converters/swin2mmseg.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.convert_swin(official)


# ----------------------------------------------------------------- video


def test_video_from_videomae_and_official_swin(tmp_path):
    # VideoMAE's pre-training file, converted by tools/model_converters/
    # videomae2mmaction.py's function; Video Swin inflates the official 2D
    # Swin file itself (pretrained2d=True).
    source = tmp_path / 'videomae_pretrain.pth'
    videomae_pretrain(source, **TINY['videomae'])
    videomae = tmp_path / 'vit-base-p16_videomae-k400-pre.pth'
    convert_videomae_checkpoint(str(source), str(videomae))
    swin2d = tmp_path / 'swin_base_patch4_window7_224_22k.pth'
    official_swin(swin2d, **TINY['swin'])
    last = len(TINY['swin']['depths']) - 1
    vit = TINY['videomae']

    def tiny(cfg, method):
        node = _stock_node(cfg)
        if node.type == 'VisionTransformer':
            node.update(embed_dims=vit['embed_dims'],
                        img_size=32,
                        patch_size=vit['patch_size'],
                        depth=vit['num_layers'],
                        num_heads=2,
                        mlp_ratio=2,
                        num_frames=4,
                        tubelet_size=vit['tubelet_size'])
            node.init_cfg.checkpoint = str(videomae)
            cfg.model.cls_head.in_channels = vit['embed_dims']
        else:
            swin = TINY['swin']
            node.update(arch=dict(embed_dims=swin['embed_dims'],
                                  depths=swin['depths'],
                                  num_heads=swin['num_heads']),
                        window_size=(2, 7, 7),
                        out_indices=(last, ),
                        pretrained=str(swin2d))
            cfg.model.cls_head.in_channels = swin['embed_dims'] * 2**last

    for prefix, size, new in (('videomae-vit-b_hmdb51', 32, ('fc_norm.weight',
                                                             'fc_norm.bias')),
                              ('swin-b_k400', 56, (f'norm{last}.weight',
                                                   f'norm{last}.bias'))):
        configs = {
            _method_of(osp.basename(p)): p
            for p in sorted(
                glob.glob(osp.join(ROOT, 'configs/video', f'{prefix}_*.py')))
        }
        _run_family('video',
                    configs,
                    tiny,
                    lambda: _action_data(size),
                    torch.randn(2, 1, 3, 4, size, size)[:, 0],
                    trained_new=new)


def _action_data(size):
    from mmaction.structures import ActionDataSample
    generator = torch.Generator().manual_seed(0)
    return dict(inputs=[
        torch.randint(0,
                      256, (1, 3, 4, size, size),
                      generator=generator,
                      dtype=torch.uint8) for _ in range(2)
    ],
                data_samples=[
                    ActionDataSample().set_gt_label(torch.LongTensor([i]))
                    for i in range(2)
                ])


# ----------------------------------------------------------------- dense


def _seg_data(size=64):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    generator = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(2):
        sample = SegDataSample(metainfo=dict(img_shape=(size, size),
                                             ori_shape=(size, size),
                                             pad_shape=(size, size)))
        sample.gt_sem_seg = PixelData(
            data=torch.randint(0, 3, (1, size, size), generator=generator))
        samples.append(sample)
    return dict(inputs=[
        torch.randint(0,
                      256, (3, size, size),
                      generator=generator,
                      dtype=torch.uint8) for _ in range(2)
    ],
                data_samples=samples)


def _det_data(with_mask):
    from mmdet.testing import demo_mm_inputs
    torch.manual_seed(0)
    return demo_mm_inputs(2, (3, 64, 64),
                          num_items=[3, 2],
                          num_classes=3,
                          with_mask=with_mask)


def _official_swin_file(tmp_path, swin, img_size):
    """The official file of ``swin``'s sizes, as released."""
    path = tmp_path / f'swin_official_{len(swin["depths"])}.pth'
    official_swin(path,
                  embed_dims=swin['embed_dims'],
                  depths=swin['depths'],
                  num_heads=swin['num_heads'],
                  window_size=swin['window_size'],
                  img_size=img_size)
    return path


def test_ade20k_from_the_official_swin_converted_by_mmseg(tmp_path):
    official = official_swin(tmp_path / 'official.pth', **TINY['swin'])
    path = tmp_path / 'swin_base_patch4_window7_224_22k_mmseg.pth'
    torch.save(_swin2mmseg(official), path)
    swin = dict(TINY_SEG_SWIN, init_cfg=_pretrained(path))

    def tiny(cfg, method):
        tiny_upernet_config(cfg, str(tmp_path), swin)

    configs = _configs('ade20k', 'upernet_*.py')
    _run_family('ade20k',
                configs,
                tiny,
                _seg_data,
                torch.randn(2, 3, 64, 64),
                trained_new=('norm0.weight', 'norm0.bias', 'norm1.weight',
                             'norm1.bias'))


@pytest.mark.parametrize('family', ['coco', 'voc'])
def test_coco_voc_from_the_official_swin_converted_while_loading(
        tmp_path, family):
    # mmdet's Swin with convert_weights=True, as the configs ship.
    swin = TINY_DET_SWIN if family == 'coco' else TINY_VOC_SWIN
    path = _official_swin_file(tmp_path, swin,
                               56 * 2**(len(swin['depths']) - 2))
    make_tiny = dict(coco=tiny_cascade_config, voc=tiny_retinanet_config)

    def tiny(cfg, method):
        make_tiny[family](cfg, str(tmp_path), swin)
        _stock_node(cfg).update(convert_weights=True,
                                init_cfg=_pretrained(path))

    norms = [
        f'norm{i}.{p}' for i in swin['out_indices'] for p in ('weight', 'bias')
    ]
    configs = _configs(family, '*.py')
    _run_family(family,
                configs,
                tiny,
                lambda: _det_data(with_mask=family == 'coco'),
                torch.randn(2, 3, 64, 64),
                trained_new=norms)


# ------------------------------------------------------------- real size


@pytest.mark.skipif(not real_size(),
                    reason='opt-in: MMPETL_REAL_SIZE=1 '
                    '(files of the published sizes, about 2 GB, minutes)')
def test_published_sizes_load(tmp_path):
    """The published sizes, one file per loader: ViT-B/16 21k (.npz,
    converted), Swin-B 22k official (mmdet converting while loading, mmseg
    after swin2mmseg, mmaction2 inflating), VideoMAE ViT-B (converted)."""
    vit = converted_vit_npz(str(tmp_path / 'vit.pth'))
    official = tmp_path / 'swin_base_patch4_window7_224_22k.pth'
    state = official_swin(official)
    mmseg_file = tmp_path / 'swin_mmseg.pth'
    torch.save(_swin2mmseg(state), mmseg_file)
    del state
    videomae_pretrain(tmp_path / 'videomae.pth')
    videomae = tmp_path / 'videomae_mmaction.pth'
    convert_videomae_checkpoint(str(tmp_path / 'videomae.pth'), str(videomae))
    swin_b = dict(embed_dims=128,
                  depths=(2, 2, 18, 2),
                  num_heads=(4, 8, 16, 32),
                  window_size=7)
    cases = [
        (dict(type='mmpretrain.VisionTransformer',
              arch='b',
              img_size=224,
              patch_size=16,
              init_cfg=_pretrained(vit, 'backbone.')), ()),
        (dict(type='mmdet.SwinTransformer',
              convert_weights=True,
              init_cfg=_pretrained(official),
              **swin_b), 'norm0123'),
        (dict(type='mmseg.SwinTransformer',
              init_cfg=_pretrained(mmseg_file),
              **swin_b), 'norm0123'),
        (dict(type='mmaction.SwinTransformer3D',
              arch='base',
              pretrained=str(official),
              pretrained2d=True,
              patch_size=(2, 4, 4),
              window_size=(8, 7, 7)), ()),
        (dict(type='mmaction.VisionTransformer',
              img_size=224,
              patch_size=16,
              embed_dims=768,
              depth=12,
              num_heads=12,
              mlp_ratio=4,
              qkv_bias=True,
              num_frames=16,
              norm_cfg=dict(type='LN', eps=1e-6),
              init_cfg=_pretrained(videomae, 'backbone.')), 'fc_norm'),
    ]
    for backbone, new in cases:
        model = FrozenBackbone(ConfigDict(copy.deepcopy(backbone)))
        expected = [
            f'norm{i}.{p}' for i in range(4) for p in ('weight', 'bias')
        ] if new == 'norm0123' else (
            ['fc_norm.weight', 'fc_norm.bias'] if new else [])
        assert sorted(model.new_layers) == sorted(expected), backbone['type']
