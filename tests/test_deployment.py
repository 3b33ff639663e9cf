# Copyright (c) mmpetl contributors. All rights reserved.
"""Deployment of merged checkpoints without mmpetl: the stock inferencers of
mmpretrain, mmseg, mmdet and mmaction2 (tools/deployment/inference.py, in a
process where mmpetl cannot be imported), and ONNX export checked with
onnxruntime (tools/deployment/pytorch2onnx.py)."""
import collections
import importlib.util
import json
import os.path as osp
import subprocess
import sys

import cv2
import onnx
import pytest
import torch
from mmengine.config import Config

from mmpetl.apis.reparam import build_model, reparameterize_checkpoint
from mmpetl.datasets import write_digits_task, write_motion_task
from tests.support.dense import (shipped_config, tiny_cascade_config,
                                 tiny_upernet_config, write_ade20k,
                                 write_coco)
from tests.support.helpers import (TINY_DET_SWIN, TINY_SEG_SWIN,
                                   pretrained_cfg, randomize_trainable)
from tests.support.tools import QUICKSTART, ROOT, run_tool
from tests.support.video import (TINY_VIDEO_VIT, VIDEO_TOOL_CONFIG,
                                 video_pretrained_cfg)

INFERENCE = osp.join(ROOT, 'tools', 'deployment', 'inference.py')
PYTORCH2ONNX = osp.join(ROOT, 'tools', 'deployment', 'pytorch2onnx.py')

# Runs the tool once per (config, checkpoint, input) in one process where
# importing mmpetl fails, then checks that nothing imported it.
NO_MMPETL = """
import json, runpy, sys

class NoMmpetl:
    def find_spec(self, name, path=None, target=None):
        if name == 'mmpetl' or name.startswith('mmpetl.'):
            raise ImportError('mmpetl must not be imported here')

sys.meta_path.insert(0, NoMmpetl())
for argv in json.loads(sys.argv[1]):
    sys.argv = argv
    runpy.run_path(argv[0], run_name='__main__')
assert 'mmpetl' not in sys.modules
assert not any(m.startswith('mmpetl.') for m in sys.modules)
print('mmpetl was never imported')
"""


def load_tool(path):
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def save_adapter_checkpoint(config, path, seed=0):
    """An adapter checkpoint as training writes it (adapters and head, the
    frozen backbone left out), with adapters moved off the identity."""
    torch.manual_seed(seed)
    model = randomize_trainable(build_model(config), seed)
    torch.save(dict(state_dict=model.state_dict()), path)
    return path


def classifier_config(root):
    data = root / 'digits'
    write_digits_task(str(data), (5, 6, 7), train_fraction=0.25)
    base = Config.fromfile(osp.join(QUICKSTART, '_base_',
                                    'vit-tiny_digits.py'))
    # Perturbed, as trained weights are: no two parameters hold the same
    # values (the ONNX exporter would store those once).
    pretrained = pretrained_cfg(
        dict(base.vit, type='mmpretrain.VisionTransformer'),
        root / 'vit.pth', perturb=0.05)
    cfg = Config.fromfile(
        osp.join(QUICKSTART, 'vit-tiny_digits5-9_repadapter.py'))
    cfg.model.backbone.backbone = pretrained
    cfg.model.head.num_classes = 3
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].dataset.data_root = str(data)
    image = osp.join(str(data), next(
        line.split()[0] for line in open(data / 'test.txt')))
    return cfg, image


def segmentor_config(root):
    data = write_ade20k(str(root / 'ade'))
    swin = pretrained_cfg(TINY_SEG_SWIN, root / 'seg_swin.pth', perturb=0.02)
    cfg = tiny_upernet_config(
        Config.fromfile(shipped_config('seg', 'repadapter')), data, swin)
    return cfg, osp.join(data, 'images', 'validation', 'china.jpg')


def detector_config(root):
    data = write_coco(str(root / 'coco'))
    swin = pretrained_cfg(TINY_DET_SWIN, root / 'det_swin.pth', perturb=0.02)
    cfg = tiny_cascade_config(
        Config.fromfile(shipped_config('det', 'repadapter')), data, swin)
    return cfg, osp.join(data, 'val', 'flower.jpg')


def recognizer_config(root):
    data = root / 'motion'
    write_motion_task(str(data))
    pretrained = video_pretrained_cfg(TINY_VIDEO_VIT, root / 'video_vit.pth')
    path = root / 'video_adapter.py'
    path.write_text(VIDEO_TOOL_CONFIG.format(
        data=data, method='RepAdapterBackbone', backbone=pretrained,
        options='scale=1.0', head='TimeSformerHead', size=32))
    clip = sorted(p for p in (data / 'rawframes').iterdir() if p.is_dir())[0]
    return Config.fromfile(path), str(clip)


TOOLBOXES = dict(
    mmpretrain=classifier_config,
    mmseg=segmentor_config,
    mmdet=detector_config,
    mmaction=recognizer_config)


@pytest.fixture(scope='module')
def merged(tmp_path_factory):
    """Per toolbox: adapter config and checkpoint, the merged checkpoint
    and stock config written by the library side of tools/reparam.py, and
    an input."""
    root = tmp_path_factory.mktemp('deployment')
    models = {}
    for scope, make in TOOLBOXES.items():
        cfg, sample = make(root)
        assert cfg.default_scope == scope
        config = root / f'{scope}_adapter.py'
        cfg.dump(str(config))
        cfg = Config.fromfile(config)
        checkpoint = save_adapter_checkpoint(cfg, root / f'{scope}.pth')
        out = dict(config=str(config), checkpoint=str(checkpoint),
                   stock_config=str(root / f'{scope}_stock.py'),
                   merged=str(root / f'{scope}_merged.pth'), input=sample)
        report = reparameterize_checkpoint(
            out['config'], out['checkpoint'], out['merged'],
            out_config=out['stock_config'], verify=True)
        assert report['adapters'] > 0
        models[scope] = out
    return models


def close(expected, actual, scope):
    """Adapter-model and merged-model predictions agree."""
    if scope in ('mmpretrain', 'mmaction'):
        torch.testing.assert_close(
            torch.tensor(actual['pred_scores']),
            torch.tensor(expected['pred_scores']), rtol=1e-4, atol=1e-5)
    elif scope == 'mmseg':
        labels = (torch.tensor(actual['sem_seg']) == torch.tensor(
            expected['sem_seg'])).float()
        assert labels.mean() > 0.999  # a pixel may flip at a near-tie
    else:
        assert len(actual['scores']) == len(expected['scores']) > 0
        torch.testing.assert_close(
            torch.tensor(actual['bboxes']), torch.tensor(expected['bboxes']),
            rtol=1e-3, atol=1e-2)
        torch.testing.assert_close(
            torch.tensor(actual['scores']), torch.tensor(expected['scores']),
            rtol=1e-3, atol=1e-5)


def test_inferencers_run_merged_checkpoints_without_mmpetl(merged, tmp_path):
    runs = []
    for scope, spec in merged.items():
        runs.append([INFERENCE, spec['stock_config'], spec['merged'],
                     spec['input'], '--out', str(tmp_path / f'{scope}.json')])
    result = subprocess.run(
        [sys.executable, '-c', NO_MMPETL, json.dumps(runs)], cwd=ROOT,
        capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + \
        result.stderr[-3000:]
    assert 'mmpetl was never imported' in result.stdout

    # The same inferencers on the adapter models (here, with mmpetl) give
    # the same predictions: the merged checkpoints carry the adaptation.
    tool = load_tool(INFERENCE)
    for scope, spec in merged.items():
        actual = json.loads((tmp_path / f'{scope}.json').read_text())
        actual = actual[spec['input']]
        expected, = tool.run_inference(spec['config'], spec['checkpoint'],
                                       [spec['input']])
        close(expected, actual, scope)


def test_tools_refuse_adapter_checkpoint(merged, tmp_path):
    """An unmerged checkpoint with the stock config: one error line, exit
    status 2, nothing written (the inferencers alone would only warn)."""
    spec = merged['mmpretrain']
    for tool, out, args in (
            (INFERENCE, tmp_path / 'preds.json', [spec['input'], '--out']),
            (PYTORCH2ONNX, tmp_path / 'model.onnx', [])):
        result = run_tool(tool, spec['stock_config'], spec['checkpoint'],
                          *args, str(out), expect_ok=False)
        assert result.returncode == 2
        assert 'does not match' in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert not out.exists()
    assert 'merge it first with tools/reparam.py' in run_tool(
        INFERENCE, spec['stock_config'], spec['checkpoint'], spec['input'],
        expect_ok=False).stderr


def initializers(path):
    graph = onnx.load(path).graph
    return {t.name: tuple(t.dims) for t in graph.initializer}, \
        collections.Counter(n.op_type for n in graph.node)


def test_onnx_export_equals_pytorch_and_has_stock_parameters(
        merged, tmp_path):
    spec = merged['mmpretrain']
    out = tmp_path / 'merged.onnx'
    result = run_tool(PYTORCH2ONNX, spec['stock_config'], spec['merged'],
                      str(out), '--shape', '2', '3', '32', '32', '--verify',
                      '--tolerance', '1e-4')
    assert 'verified' in result.stdout
    params = sum(p.numel() for p in build_model(
        Config.fromfile(spec['stock_config'])).parameters())
    assert f'initializers: {params:,} elements; model: {params:,} ' \
        'parameters, 0 floating-point buffer elements' in result.stdout

    tool = load_tool(PYTORCH2ONNX)
    model = tool.load_stock_model(spec['stock_config'], spec['merged'])
    inputs = torch.randn(3, 3, 32, 32)
    import onnxruntime
    session = onnxruntime.InferenceSession(
        str(out), providers=['CPUExecutionProvider'])
    actual = torch.from_numpy(session.run(None, {'inputs': inputs.numpy()})[0])
    with torch.no_grad():
        expected = model(inputs, mode='tensor')
    torch.testing.assert_close(actual, expected, rtol=0, atol=1e-4)

    # The graph holds exactly the stock model's parameters, under their
    # names, and the stock model's operators: no adapter left.
    names, ops = initializers(str(out))
    state = model.state_dict()
    assert names == {k: tuple(v.shape) for k, v in state.items()}
    assert sum(torch.Size(s).numel() for s in names.values()) == \
        sum(p.numel() for p in model.parameters())
    assert tool.initializer_elements(str(out)) == \
        sum(p.numel() for p in model.parameters())
    stock = build_model(Config.fromfile(spec['stock_config']))
    with torch.no_grad():
        for param in stock.parameters():
            param.normal_()
    tool.export_onnx(stock, inputs, str(tmp_path / 'stock.onnx'))
    assert initializers(str(tmp_path / 'stock.onnx')) == (names, ops)
    # An unmerged adapter model exports adapter operators and weights.
    adapter = tmp_path / 'adapter.onnx'
    tool.export_onnx(build_model(Config.fromfile(spec['config'])).eval(),
                     inputs, str(adapter))
    adapter_names, adapter_ops = initializers(str(adapter))
    assert any('adapter' in name for name in adapter_names)
    assert sum(adapter_ops.values()) > sum(ops.values())
