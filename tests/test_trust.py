# Copyright (c) mmpetl contributors. All rights reserved.
"""Trust what is loaded and what is written (issue 11): safe unpickling,
adapters bound to their backbone, non-finite weights refused, inputs never
overwritten, exact resume. End to end through the tools on a tiny ViT and
real data (scikit-learn's digits), with dropout, drop-path and random crops
on."""
import copy
import hashlib
import os
import os.path as osp
import socket
import stat
import subprocess
import sys
import warnings

import pytest
import torch
from mmengine.config import Config
from mmengine.logging import HistoryBuffer
from mmengine.runner.checkpoint import _load_checkpoint, load_checkpoint

from mmpetl.checkpoint_io import (CheckpointError, UnsafeCheckpointError,
                                  load_checkpoint_dict, load_local_checkpoint,
                                  run_input_files)
from mmpetl.datasets import write_digits_task
from mmpetl.fingerprint import BackboneMismatchError
from mmpetl.reparam import (build_model, max_relative_difference,
                            reparameterize_checkpoint)
from mmpetl.registry import MODELS
from tests.helpers import TINY_SEG_SWIN, TINY_VIT, pretrained_cfg
from tests.test_tools import CONFIG as TOOLS_CONFIG

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
QUICKSTART = osp.join(ROOT, 'configs', 'quickstart')

# The tools' test config (tiny data, 2 epochs), reached through a local
# _base_ chain so that the tests can aim outputs at _base_ files without
# risking a repository file; dropout on, a checkpoint every 4 iterations.
BASE = "_base_ = ['{method}']\n"
CONFIG = """
_base_ = ['./tools.py']
model = dict(backbone=dict(backbone=dict(drop_rate=0.1)))
default_hooks = dict(checkpoint=dict(interval=4, by_epoch=False))
"""


def write_config(folder, data, pretrained):
    """``folder/repadapter.py`` -> tools.py -> base.py -> quickstart's."""
    (folder / 'base.py').write_text(BASE.format(method=osp.join(
        QUICKSTART, 'vit-tiny_digits5-9_repadapter.py')))
    (folder / 'tools.py').write_text(TOOLS_CONFIG.format(
        base='./base.py', data=data, pretrained=pretrained))
    (folder / 'repadapter.py').write_text(CONFIG)
    return str(folder / 'repadapter.py')


def run_tool(*args, expect_ok=True, env=None):
    result = subprocess.run([sys.executable, *args], cwd=ROOT,
                            capture_output=True, text=True,
                            env=dict(os.environ, **(env or {})))
    if expect_ok:
        assert result.returncode == 0, result.stdout[-3000:] + \
            result.stderr[-3000:]
    return result


def one_error_line(result):
    """The tool exited 2 with exactly one ``error:`` line; returns it."""
    assert result.returncode == 2, result.stdout[-2000:] + \
        result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines()
              if line.startswith('error:')]
    assert len(errors) == 1, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    return errors[0]


def sha256(path):
    return hashlib.sha256(open(path, 'rb').read()).hexdigest()


def save_pretrained(vit, path, noise=0.):
    state = {f'backbone.{k}': v.clone() for k, v in vit.state_dict().items()}
    if noise:
        generator = torch.Generator().manual_seed(1)
        for value in state.values():
            if value.is_floating_point():
                value.add_(noise * torch.randn(value.shape,
                                               generator=generator))
    torch.save(dict(state_dict=state), path)


@pytest.fixture(scope='module')
def workspace(tmp_path_factory):
    """Digits data, two 'pre-trained' tiny ViTs that differ slightly, and a
    RepAdapter config for each."""
    root = tmp_path_factory.mktemp('trust')
    data = root / 'data'
    write_digits_task(str(data), (5, 6, 7), train_fraction=0.25)
    base = Config.fromfile(osp.join(QUICKSTART, '_base_',
                                    'vit-tiny_digits.py'))
    torch.manual_seed(0)
    vit = build_model(Config(dict(default_scope='mmpretrain',
                                  model=base.vit)))
    configs, pretrained = {}, {}
    for name, noise in (('a', 0.), ('b', 1e-3)):
        pretrained[name] = root / f'pretrained_{name}.pth'
        save_pretrained(vit, pretrained[name], noise)
        folder = root / name
        folder.mkdir()
        configs[name] = write_config(folder, data, pretrained[name])
    return dict(root=root, configs=configs,
                pretrained={k: str(v) for k, v in pretrained.items()})


@pytest.fixture(scope='module')
def trained(workspace):
    """RepAdapter trained 2 epochs (18 iterations, a checkpoint every 4)."""
    work_dir = workspace['root'] / 'work'
    run_tool('tools/train.py', workspace['configs']['a'], '--work-dir',
             str(work_dir))
    return dict(workspace, work_dir=work_dir,
                checkpoint=str(work_dir / 'iter_18.pth'))


# ------------------------------------------------------------ safe loading
class Payload:
    """Pickles as a call of os.system."""

    def __init__(self, command):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command, )


def payload_checkpoint(path, marker):
    torch.save(
        dict(state_dict=dict(w=torch.ones(2)),
             meta=dict(note=Payload(f'touch {marker}'))), path)


def test_payload_runs_nowhere(trained, tmp_path):
    marker = tmp_path / 'marker'
    evil = tmp_path / 'evil.pth'
    payload_checkpoint(evil, marker)
    config = trained['configs']['a']
    for load in (lambda: _load_checkpoint(str(evil)),
                 lambda: load_checkpoint(torch.nn.Linear(1, 1), str(evil)),
                 lambda: load_checkpoint_dict(str(evil))):
        with pytest.raises(UnsafeCheckpointError, match=r'system.*'
                           'MMPETL_TRUSTED_CHECKPOINTS=1'):
            load()
    # init_cfg Pretrained.
    with pytest.raises(UnsafeCheckpointError):
        MODELS.build(dict(type='mmpetl.RepAdapterBackbone',
                          backbone=dict(TINY_VIT, init_cfg=dict(
                              type='Pretrained', checkpoint=str(evil)))))
    # The tools: one line naming the file and the type, exit 2.
    for args in (('tools/test.py', config, str(evil), '--work-dir',
                  str(tmp_path / 'w')),
                 ('tools/train.py', config, '--resume', str(evil),
                  '--work-dir', str(tmp_path / 'w'))):
        error = one_error_line(run_tool(*args, expect_ok=False))
        assert str(evil) in error and 'system' in error
    with pytest.raises(CheckpointError, match='not among the types'):
        reparameterize_checkpoint(config, str(evil), str(tmp_path / 'o.pth'))
    assert not marker.exists()


def test_trusted_files_load_only_when_asked(tmp_path, monkeypatch):
    import datetime
    path = tmp_path / 'dated.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(1)),
                    meta=dict(day=datetime.date(2024, 1, 2))), path)
    with pytest.raises(UnsafeCheckpointError, match='datetime.date'):
        load_local_checkpoint(str(path))
    monkeypatch.setenv('MMPETL_TRUSTED_CHECKPOINTS', '1')
    assert load_local_checkpoint(str(path))['meta']['day'].day == 2


class Gadget:
    """Pickles as getattr(getattr, '__self__'): the builtins module."""

    def __reduce__(self):
        return getattr, (getattr, '__self__')


def test_getattr_reaches_only_allow_listed_methods(tmp_path):
    # HistoryBuffer pickles its statistics methods through getattr; a free
    # getattr would hand out any object.
    path = tmp_path / 'gadget.pth'
    torch.save(dict(meta=dict(g=Gadget()), state_dict={}), path)
    with pytest.raises(UnsafeCheckpointError, match='builtins.getattr'):
        load_local_checkpoint(str(path))


def test_runner_checkpoints_load_safely(trained):
    # A real Runner checkpoint: message hub, HistoryBuffer, NumPy scalars.
    checkpoint = load_local_checkpoint(
        str(trained['work_dir'] / 'iter_8.pth'))
    buffers = checkpoint['message_hub']['log_scalars']
    assert any(isinstance(b, HistoryBuffer) for b in buffers.values())
    assert checkpoint['meta']['iter'] == 8
    assert 'optimizer' in checkpoint and 'mmpetl_resume' in checkpoint


def test_unreadable_checkpoints_are_one_line(trained, tmp_path):
    config = trained['configs']['a']
    text = tmp_path / 'notes.pth'
    text.write_text('not a checkpoint')
    error = one_error_line(run_tool('tools/test.py', config, str(text),
                                    expect_ok=False))
    assert f'{text} is not a PyTorch checkpoint' in error
    for args in (('tools/test.py', config, str(tmp_path)),
                 ('tools/train.py', config, '--resume', str(tmp_path))):
        error = one_error_line(run_tool(*args, expect_ok=False))
        assert f'{tmp_path} is a directory' in error


# -------------------------------------------------------------- fingerprint
def test_fingerprint_binds_adapters_to_their_backbone(tmp_path, monkeypatch):
    vit_a = pretrained_cfg(TINY_VIT, tmp_path / 'a.pth', seed=1)
    vit_b = pretrained_cfg(TINY_VIT, tmp_path / 'b.pth', seed=2)
    cfg = dict(type='mmpetl.ARCBackbone', hidden_dim=4)
    trained = MODELS.build(dict(cfg, backbone=vit_a))
    saved = trained.state_dict()
    assert set(saved) == {n for n, p in trained.named_parameters()
                          if p.requires_grad}  # keys: what trains, only
    # Same backbone: loads silently.
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        MODELS.build(dict(cfg, backbone=copy.deepcopy(vit_a))) \
            .load_state_dict(saved)
    other = MODELS.build(dict(cfg, backbone=vit_b))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(BackboneMismatchError) as error:
        other.load_state_dict(saved)
    assert str(tmp_path / 'a.pth') in str(error.value)
    assert str(tmp_path / 'b.pth') in str(error.value)
    assert 'MMPETL_IGNORE_FINGERPRINT=1' in str(error.value)
    for key, value in other.state_dict().items():
        assert torch.equal(value, before[key])
    monkeypatch.setenv('MMPETL_IGNORE_FINGERPRINT', '1')
    with pytest.warns(UserWarning, match='loading anyway'):
        other.load_state_dict(saved)
    monkeypatch.delenv('MMPETL_IGNORE_FINGERPRINT')
    # Written before fingerprints (no metadata): a warning.
    with pytest.warns(UserWarning, match='no backbone fingerprint'):
        other.load_state_dict(dict(saved))
    # The frozen weights come along: no check.
    full = MODELS.build(dict(cfg, backbone=vit_a, save_frozen=True))
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        other.load_state_dict(full.state_dict())
    assert other.backbone_fingerprint().digest == \
        full.backbone_fingerprint().digest


def test_e3va_is_bound_too(tmp_path):
    swin_a = pretrained_cfg(TINY_SEG_SWIN, tmp_path / 'a.pth', seed=1)
    swin_b = pretrained_cfg(TINY_SEG_SWIN, tmp_path / 'b.pth', seed=2)
    saved = MODELS.build(dict(type='mmpetl.E3VABackbone', rank=4,
                              backbone=swin_a)).state_dict()
    other = MODELS.build(dict(type='mmpetl.E3VABackbone', rank=4,
                              backbone=swin_b))
    with pytest.raises(BackboneMismatchError, match='b.pth'):
        other.load_state_dict(saved)


def test_tools_refuse_another_backbone(trained, tmp_path):
    other_cfg = trained['configs']['b']
    checkpoint = trained['checkpoint']
    for args in (('tools/test.py', other_cfg, checkpoint),
                 ('tools/train.py', other_cfg, '--resume', checkpoint),
                 ('tools/train.py', other_cfg, '--cfg-options',
                  f'load_from={checkpoint}')):
        error = one_error_line(run_tool(*args, '--work-dir',
                                        str(tmp_path / 'w'),
                                        expect_ok=False))
        assert trained['pretrained']['a'] in error
        assert trained['pretrained']['b'] in error
    out = tmp_path / 'merged.pth'
    with pytest.raises(BackboneMismatchError, match=checkpoint):
        reparameterize_checkpoint(other_cfg, checkpoint, str(out))
    assert not out.exists()
    # The documented override.
    result = run_tool('tools/test.py', other_cfg, checkpoint, '--work-dir',
                      str(tmp_path / 'w'),
                      env=dict(MMPETL_IGNORE_FINGERPRINT='1'))
    assert 'loading anyway' in result.stderr


# ------------------------------------------------------------- non-finite
def nan_checkpoint(trained, path):
    checkpoint = torch.load(trained['checkpoint'], weights_only=False)
    key = next(k for k in checkpoint['state_dict']
               if '.adapter.' in k and k.endswith('weight'))
    checkpoint['state_dict'][key][0] = float('nan')
    torch.save(checkpoint, path)
    return key


def test_non_finite_weights_are_refused(trained, tmp_path):
    config = trained['configs']['a']
    bad = tmp_path / 'nan.pth'
    key = nan_checkpoint(trained, bad)
    out = tmp_path / 'merged.pth'
    for verify in (False, True):
        with pytest.raises(CheckpointError, match=f'{key} holds'):
            reparameterize_checkpoint(config, str(bad), str(out),
                                      verify=verify)
        assert not out.exists()
    error = one_error_line(run_tool('tools/reparam.py', config, str(bad),
                                    str(out), '--verify', expect_ok=False))
    assert key in error and 'NaN' in error
    error = one_error_line(run_tool('tools/test.py', config, str(bad),
                                    expect_ok=False))
    assert key in error and 'non-finite' in error
    assert sorted(os.listdir(tmp_path)) == ['nan.pth']


def test_verify_fails_on_non_finite_outputs():
    model = torch.nn.Linear(4, 4)
    broken = copy.deepcopy(model)
    with torch.no_grad():
        broken.weight[0, 0] = float('inf')
    with pytest.raises(ValueError, match='compared output holds NaN or Inf'):
        max_relative_difference(model, broken, torch.randn(2, 4))
    with pytest.raises(ValueError, match='input holds'):
        max_relative_difference(model, model,
                                torch.full((2, 4), float('nan')))


# ------------------------------------------------------ inputs untouched
def test_outputs_never_replace_inputs(trained, tmp_path):
    config = trained['configs']['a']
    base = osp.join(osp.dirname(config), 'base.py')
    checkpoint = trained['checkpoint']
    pretrained = trained['pretrained']['a']
    inputs = run_input_files(config)
    assert {config, base, pretrained} <= set(inputs)
    assert osp.join(QUICKSTART, 'vit-tiny_digits5-9_repadapter.py') in inputs
    hashes = {p: sha256(p) for p in (config, base, checkpoint, pretrained)}
    for target in hashes:
        error = one_error_line(run_tool(
            'tools/test.py', config, checkpoint, '--metrics-out', target,
            '--force', '--work-dir', str(tmp_path / 'w'), expect_ok=False))
        assert 'is an input' in error
        for out_ckpt, out_cfg in ((target, None),
                                  (str(tmp_path / 'm.pth'), target)):
            with pytest.raises(CheckpointError, match='is an input'):
                reparameterize_checkpoint(config, checkpoint, out_ckpt,
                                          out_config=out_cfg, force=True)
    assert {p: sha256(p) for p in hashes} == hashes

    # --metrics-out: no-clobber unless --force; written 0644.
    metrics = tmp_path / 'metrics.json'
    metrics.write_text('keep')
    error = one_error_line(run_tool(
        'tools/test.py', config, checkpoint, '--metrics-out', str(metrics),
        '--work-dir', str(tmp_path / 'w'), expect_ok=False))
    assert 'exists; pass --force' in error and metrics.read_text() == 'keep'
    run_tool('tools/test.py', config, checkpoint, '--metrics-out',
             str(metrics), '--force', '--work-dir', str(tmp_path / 'w'))
    assert 'accuracy/top1' in metrics.read_text()
    out = tmp_path / 'merged.pth'
    reparameterize_checkpoint(config, checkpoint, str(out),
                              out_config=str(tmp_path / 'stock.py'))
    for path in (metrics, out, tmp_path / 'stock.py'):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_unwritable_output_folder_fails_before_testing(trained, tmp_path):
    if os.geteuid() == 0:  # root writes anywhere but to /proc
        folder = '/proc'
    else:
        folder = tmp_path / 'locked'
        folder.mkdir()
        folder.chmod(0o500)
    result = run_tool('tools/test.py', trained['configs']['a'],
                      trained['checkpoint'], '--metrics-out',
                      osp.join(folder, 'metrics.json'), '--work-dir',
                      str(tmp_path / 'w'), expect_ok=False)
    assert 'is not writable' in one_error_line(result)
    assert 'Epoch(test)' not in result.stdout + result.stderr


# ------------------------------------------------------------ exact resume
def final_weights(work_dir):
    last = open(osp.join(work_dir, 'last_checkpoint')).read().strip()
    return torch.load(last, weights_only=False)['state_dict']


def assert_same_weights(a, b):
    assert set(a) == set(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.mark.parametrize('checkpoint', ['iter_4.pth', 'iter_12.pth'])
def test_resume_mid_epoch_is_exact(trained, tmp_path, checkpoint):
    # 9 iterations per epoch: iter 4 is mid-epoch 1, iter 12 mid-epoch 2.
    run_tool('tools/train.py', trained['configs']['a'], '--work-dir',
             str(tmp_path), '--resume',
             str(trained['work_dir'] / checkpoint))
    assert_same_weights(final_weights(tmp_path),
                        final_weights(trained['work_dir']))


def dist_train(config, work_dir, *args):
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(port))
    result = subprocess.run(
        ['bash', 'tools/dist_train.sh', config, '2', '--work-dir',
         str(work_dir), *args], cwd=ROOT, env=env, capture_output=True,
        text=True)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]


def test_resume_mid_epoch_is_exact_on_two_processes(workspace, tmp_path):
    # Two ranks of 16 samples per batch: 5 iterations per epoch; iteration
    # 8 is mid-epoch 2.
    config = workspace['configs']['a']
    dist_train(config, tmp_path / 'full')
    dist_train(config, tmp_path / 'resumed', '--resume',
               str(tmp_path / 'full' / 'iter_8.pth'))
    assert_same_weights(final_weights(tmp_path / 'resumed'),
                        final_weights(tmp_path / 'full'))
