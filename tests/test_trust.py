# Copyright (c) mmpetl contributors. All rights reserved.
"""Trust what is loaded and what is written (issues 11 and 19): safe
unpickling (local files and every URL scheme), strict environment switches,
adapters bound to their backbone, non-finite and malformed weights refused,
inputs never overwritten by any tool, hook or the runner, atomic runner
checkpoints, exact resume (also with validation), checkpoint configs read as
data, one-line errors. End to end through the tools on a tiny ViT and
real data (scikit-learn's digits), with dropout, drop-path and random crops
on."""
import copy
import hashlib
import json
import os
import os.path as osp
import re
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

from mmpetl.apis.reparam import (build_model, max_relative_difference,
                                 reparameterize_checkpoint)
from mmpetl.datasets import write_digits_task
from mmpetl.fileio.configs import run_input_files
from mmpetl.fileio.errors import (CheckpointError, OutputError,
                                  UnsafeCheckpointError)
from mmpetl.fileio.safe_load import (load_checkpoint_dict,
                                     load_local_checkpoint)
from mmpetl.fileio.fingerprint import BackboneMismatchError
from mmpetl.registry import MODELS
from tests.support.helpers import TINY_SEG_SWIN, TINY_VIT, pretrained_cfg
from tests.support.tools import QUICKSTART_CONFIG, one_error_line, run_tool

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
    (folder / 'tools.py').write_text(QUICKSTART_CONFIG.format(
        base='./base.py', data=data, pretrained=pretrained))
    (folder / 'repadapter.py').write_text(CONFIG)
    return str(folder / 'repadapter.py')



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
            with pytest.raises(OutputError, match='is an input'):
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


def assert_resumed(work_dir, checkpoint):
    """The run in ``work_dir`` resumed from ``checkpoint`` (``iter_N.pth``
    or ``epoch_N.pth``): it wrote checkpoints after it and none up to it.
    Equal final weights alone cannot tell: an ignored ``--resume`` retrains
    from the start, and seeded CPU training reaches the same weights."""
    unit, _, step = osp.basename(str(checkpoint))[:-4].partition('_')
    written = [
        int(match.group(1)) for name in os.listdir(work_dir)
        if (match := re.fullmatch(rf'{unit}_(\d+)\.pth', name))
    ]
    assert written and min(written) > int(step), (checkpoint, written)


@pytest.mark.parametrize('checkpoint', ['iter_4.pth', 'iter_12.pth'])
def test_resume_mid_epoch_is_exact(trained, tmp_path, checkpoint):
    # 9 iterations per epoch: iter 4 is mid-epoch 1, iter 12 mid-epoch 2.
    run_tool('tools/train.py', trained['configs']['a'], '--work-dir',
             str(tmp_path), '--resume',
             str(trained['work_dir'] / checkpoint))
    assert_resumed(tmp_path, checkpoint)
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
    assert_resumed(tmp_path / 'resumed', 'iter_8.pth')
    assert_same_weights(final_weights(tmp_path / 'resumed'),
                        final_weights(tmp_path / 'full'))


# ================================================ tool inputs and outputs
# Many error cases of one tool run in one process (a tool run costs seconds
# to start): each case's exit status and what it printed on stderr.
CASES = """
import contextlib, io, json, os, runpy, sys, traceback
results = []
for argv, env in json.loads(sys.argv[1]):
    saved = dict(os.environ)
    os.environ.update(env)
    sys.argv, err, code = argv, io.StringIO(), 0
    with contextlib.redirect_stderr(err):
        try:
            runpy.run_path(argv[0], run_name='__main__')
        except SystemExit as e:
            code = e.code
        except BaseException:
            traceback.print_exc()
            code = 1
    os.environ.clear()
    os.environ.update(saved)
    results.append([code, err.getvalue()])
print('CASES' + json.dumps(results))
"""


def run_cases(cases):
    """Run ``(argv, env)`` cases of the tools in one process; returns
    ``[(exit status, stderr)]``."""
    result = subprocess.run(
        [sys.executable, '-c', CASES, json.dumps(cases)], cwd=ROOT,
        capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    line = next(x for x in result.stdout.splitlines()
                if x.startswith('CASES'))
    return json.loads(line[len('CASES'):])


def one_line(case):
    """The case exited 2 with one ``error:`` line and no traceback."""
    code, stderr = case
    errors = [x for x in stderr.splitlines() if x.startswith('error:')]
    assert code == 2 and len(errors) == 1 and 'Traceback' not in stderr, \
        stderr[-2000:]
    return errors[0]


def torch_hub_cache(tmp_path, monkeypatch):
    """An empty torch.hub cache (``$TORCH_HOME/hub/checkpoints``): what a
    URL would download to, and where a cached file is loaded from without
    the network."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch'))
    cache = tmp_path / 'torch' / 'hub' / 'checkpoints'
    cache.mkdir(parents=True)
    return cache


def url_names():
    """A name of each URL scheme mmengine resolves, and its download URL."""
    from mmengine.runner.checkpoint import (get_external_models,
                                            get_mmcls_models,
                                            get_torchvision_models)
    names = {url: url for url in ('https://example.com/a/evil.pth',
                                  'http://example.com/evil2.pth')}
    for scheme, table in (('torchvision://', get_torchvision_models()),
                          ('modelzoo://', get_torchvision_models()),
                          ('open-mmlab://', get_external_models()),
                          ('openmmlab://', get_external_models()),
                          ('mmcls://', get_mmcls_models())):
        name, url = next((k, v) for k, v in sorted(table.items())
                         if v.startswith('http'))
        names[scheme + name] = url
    return names


def test_url_checkpoints_follow_the_loading_policy(trained, tmp_path,
                                                   monkeypatch):
    """Every scheme mmengine resolves goes through the same safe
    load (a cached download is unpickled as a local file is), or is
    refused naming the opt-in; never torch.hub's full unpickling."""
    cache = torch_hub_cache(tmp_path, monkeypatch)
    marker = tmp_path / 'marker'
    for name, url in url_names().items():
        payload_checkpoint(cache / osp.basename(url), marker)
        for load in (lambda: _load_checkpoint(name),
                     lambda: load_checkpoint(torch.nn.Linear(1, 1), name)):
            with pytest.raises(UnsafeCheckpointError,
                               match='system.*MMPETL_TRUSTED_CHECKPOINTS=1'):
                load()
    with pytest.raises(UnsafeCheckpointError):
        MODELS.build(dict(type='mmpetl.RepAdapterBackbone',
                          backbone=dict(TINY_VIT, init_cfg=dict(
                              type='Pretrained',
                              checkpoint='https://example.com/a/evil.pth'))))
    # A scheme without a safe loader: refused, nothing fetched.
    with pytest.raises(UnsafeCheckpointError,
                       match='pavi://.*MMPETL_TRUSTED_CHECKPOINTS=1'):
        _load_checkpoint('pavi://folder/model.pth')
    assert not marker.exists()
    # A real runner checkpoint behind a URL loads as it does from a file.
    import shutil
    shutil.copy(trained['checkpoint'], cache / 'good.pth')
    checkpoint = _load_checkpoint('https://example.com/good.pth')
    assert checkpoint['meta']['iter'] == 18

    # Through the tools: --resume of a work dir whose last_checkpoint is a
    # URL, load_from a URL; one error line each, nothing run.
    config = trained['configs']['a']
    work = tmp_path / 'w'
    work.mkdir()
    (work / 'last_checkpoint').write_text('https://example.com/a/evil.pth')
    env = dict(TORCH_HOME=str(tmp_path / 'torch'))
    cases = run_cases([
        [['tools/train.py', config, '--work-dir', str(work), '--resume'],
         env],
        [['tools/train.py', config, '--work-dir', str(tmp_path / 'w2'),
          '--cfg-options', 'load_from=torchvision://' +
          next(n for n in url_names() if n.startswith('torchvision://'))
          [len('torchvision://'):]], env],
    ])
    for case in cases:
        assert 'MMPETL_TRUSTED_CHECKPOINTS=1' in one_line(case)
    assert not marker.exists()


@pytest.mark.parametrize('value', ['off', 'OFF', 'no', 'false', '0', ''])
def test_env_switch_off_values_are_off(value, tmp_path, monkeypatch):
    """The value 'off' (and the other off spellings) keep the allow-list and
    the fingerprint check."""
    path = tmp_path / 'dated.pth'
    import datetime
    torch.save(dict(meta=dict(day=datetime.date(2024, 1, 2))), path)
    monkeypatch.setenv('MMPETL_TRUSTED_CHECKPOINTS', value)
    with pytest.raises(UnsafeCheckpointError):
        load_local_checkpoint(str(path))
    monkeypatch.setenv('MMPETL_IGNORE_FINGERPRINT', value)
    vit_a = pretrained_cfg(TINY_VIT, tmp_path / 'a.pth', seed=1)
    vit_b = pretrained_cfg(TINY_VIT, tmp_path / 'b.pth', seed=2)
    saved = MODELS.build(dict(type='mmpetl.ARCBackbone', hidden_dim=4,
                              backbone=vit_a)).state_dict()
    with pytest.raises(BackboneMismatchError):
        MODELS.build(dict(type='mmpetl.ARCBackbone', hidden_dim=4,
                          backbone=vit_b)).load_state_dict(saved)


def test_env_switches_are_strict(trained, tmp_path, monkeypatch):
    """On spellings are on; anything else is an error naming the
    variable, in the tools one line before any work."""
    from mmpetl.fileio.switches import env_flag
    for value in ('1', 'true', 'YES', ' on '):
        monkeypatch.setenv('MMPETL_TRUSTED_CHECKPOINTS', value)
        assert env_flag('MMPETL_TRUSTED_CHECKPOINTS')
    for value in ('n', 'never', 'disabled', '2', 'y'):
        monkeypatch.setenv('MMPETL_TRUSTED_CHECKPOINTS', value)
        with pytest.raises(CheckpointError,
                           match=f'MMPETL_TRUSTED_CHECKPOINTS={value!r}'):
            load_local_checkpoint(trained['checkpoint'])
    monkeypatch.delenv('MMPETL_TRUSTED_CHECKPOINTS')
    config = trained['configs']['a']
    cases = run_cases([
        [['tools/test.py', config, trained['checkpoint'], '--work-dir',
          str(tmp_path / 'w')], dict(MMPETL_IGNORE_FINGERPRINT='never')],
        [['tools/train.py', config, '--work-dir', str(tmp_path / 'w')],
         dict(MMPETL_TRUSTED_CHECKPOINTS='disabled')],
    ])
    assert "MMPETL_IGNORE_FINGERPRINT='never'" in one_line(cases[0])
    assert "MMPETL_TRUSTED_CHECKPOINTS='disabled'" in one_line(cases[1])
    assert not (tmp_path / 'w').exists()


def test_outputs_of_every_tool_spare_the_inputs(trained, tmp_path):
    """The runner's own writes (config dump, checkpoints, merged
    files) never replace an input; inputs are computed after
    --cfg-options; a linked folder does not hide an input."""
    import shutil
    config = trained['configs']['a']
    folder = osp.dirname(config)
    checkpoint = trained['checkpoint']
    work = tmp_path / 'w'
    work.mkdir()
    planted = {name: str(work / name) for name in (
        'epoch_2.pth', 'epoch_2_merged.pth', 'copy.pth')}
    for path in planted.values():
        shutil.copy(trained['pretrained']['a'], path)
    link = tmp_path / 'link'
    link.symlink_to(folder)
    init = 'model.backbone.backbone.init_cfg.checkpoint='
    hashes = {p: sha256(p) for p in (config, *planted.values())}
    cases = run_cases([
        # The runner would dump the config over itself.
        [['tools/test.py', config, checkpoint, '--work-dir', folder], {}],
        # ... also through a linked folder.
        [['tools/test.py', config, checkpoint, '--work-dir', str(link)], {}],
        # A pre-trained file named as a checkpoint training writes.
        [['tools/train.py', config, '--work-dir', str(work),
          '--cfg-options', init + planted['epoch_2.pth']], {}],
        [['tools/train.py', config, '--work-dir', str(work),
          '--cfg-options', init + planted['epoch_2_merged.pth'],
          'train_cfg.max_epochs=2'], {}],
        # An input given through --cfg-options, as --metrics-out.
        [['tools/test.py', config, checkpoint, '--work-dir',
          str(tmp_path / 'w2'), '--metrics-out', planted['copy.pth'],
          '--force', '--cfg-options', init + planted['copy.pth']], {}],
    ])
    for case in cases:
        error = one_line(case)
        assert 'is an input' in error or 'under a name that training ' \
            'writes' in error, error
    assert {p: sha256(p) for p in hashes} == hashes


def test_run_outputs_and_guard(trained, tmp_path):
    """In process: the names training writes, read_base configs,
    the guard on atomic writes and on mmengine's file backend (what the
    runner saves checkpoints with)."""
    from mmengine.fileio import get_file_backend

    from mmpetl.apis.tool_options import check_run_outputs
    from mmpetl.fileio.configs import config_files
    from mmpetl.fileio.outputs import (atomic_output, check_output_paths,
                                       protected_inputs)
    cfg = Config(dict(work_dir=str(tmp_path)))
    for name in ('epoch_1_merged.pth', 'iter_8.pth', 'best_accuracy_top1_'
                 'epoch_2.pth', 'last_checkpoint',
                 'epoch_1_merged_config.py'):
        (tmp_path / name).write_text('input')
        with pytest.raises(CheckpointError, match='name that training'):
            check_run_outputs(cfg, 'x.py', [str(tmp_path / name)],
                              trains=True)
        check_run_outputs(cfg, 'x.py', [str(tmp_path / name)], trains=False)
    # The checkpoint resumed from is read, never written again.
    check_run_outputs(cfg, 'x.py', [str(tmp_path / 'iter_8.pth')],
                      trains=True, resume_from=str(tmp_path / 'iter_8.pth'))
    # read_base() bases are inputs.
    (tmp_path / 'lazy_base.py').write_text('x = 1\n')
    (tmp_path / 'lazy.py').write_text(
        'from mmengine.config import read_base\n'
        'with read_base():\n    from .lazy_base import *\n')
    assert str(tmp_path / 'lazy_base.py') in config_files(
        str(tmp_path / 'lazy.py'))
    # Outputs compared by samefile, also with each other.
    (tmp_path / 'real').mkdir()
    (tmp_path / 'alias').symlink_to(tmp_path / 'real')
    (tmp_path / 'real' / 'o.json').write_text('old')
    with pytest.raises(OutputError, match='two outputs'):
        check_output_paths([str(tmp_path / 'real' / 'o.json'),
                            str(tmp_path / 'alias' / 'o.json')], True, [])
    # While a run's inputs are protected, no write replaces them.
    protected = tmp_path / 'real' / 'o.json'
    backend = get_file_backend(str(protected))
    with protected_inputs([str(tmp_path / 'alias' / 'o.json')]):
        with pytest.raises(OutputError, match='is an input'):
            backend.put(b'new', str(protected))
        with pytest.raises(OutputError, match='is an input'):
            with atomic_output(str(protected)):
                pass
        backend.remove(str(protected))  # kept, with a warning
    assert protected.read_text() == 'old'
    backend.put(b'new', str(protected))
    assert protected.read_text() == 'new'
    assert stat.S_IMODE(os.stat(protected).st_mode) == 0o644


def test_output_folder_made_by_another_rank_meanwhile(tmp_path, monkeypatch):
    """The ranks of one launch check the same work_dir: one makes it
    between another's existence check and its makedirs."""
    from mmpetl.fileio import outputs
    folder = tmp_path / 'work_dir'
    exists = osp.exists

    def raced(path):  # the folder is made by "another rank" just after
        if path == str(folder) and not exists(path):
            os.mkdir(path)
            return False
        return exists(path)

    monkeypatch.setattr(outputs.osp, 'exists', raced)
    outputs.check_output_path(str(folder / 'x.log'), False,
                              make_folder=True)
    assert folder.is_dir() and list(folder.iterdir()) == []


def load_tool(path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], osp.join(ROOT, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_deployment_outputs_spare_the_inputs(trained, tmp_path, capsys):
    """The deployment tools never write over their config,
    checkpoint or inputs (also through a linked folder, also with
    --force), refuse an existing output without --force, and write with
    the usual mode."""
    import cv2
    import numpy as np
    merged, stock = tmp_path / 'm.pth', tmp_path / 'stock.py'
    reparameterize_checkpoint(trained['configs']['a'], trained['checkpoint'],
                              str(merged), out_config=str(stock))
    image = tmp_path / 'img.png'
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    (tmp_path / 'alias').symlink_to(tmp_path)
    inference = load_tool('tools/deployment/inference.py')
    onnx = load_tool('tools/deployment/pytorch2onnx.py')
    hashes = {p: sha256(p) for p in (merged, stock, image)}
    for main, argv in (
            (onnx.main, [stock, merged, merged, '--force']),
            (onnx.main, [stock, merged, tmp_path / 'alias' / 'm.pth',
                         '--force']),
            (onnx.main, [stock, merged, stock]),
            (inference.main, [stock, merged, image, '--out', merged]),
            (inference.main, [stock, merged, image, '--out', image,
                              '--force']),
            (inference.main, [stock, merged, image, '--out',
                              tmp_path / 'alias' / 'img.png', '--force'])):
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in argv])
        assert exit_.value.code == 2
        assert 'is an input' in capsys.readouterr().err
    assert {p: sha256(p) for p in hashes} == hashes
    out = tmp_path / 'preds.json'
    out.write_text('keep')
    with pytest.raises(SystemExit):
        inference.main([str(stock), str(merged), str(image), '--out',
                        str(out)])
    assert 'pass --force' in capsys.readouterr().err
    inference.main([str(stock), str(merged), str(image), '--out', str(out),
                    '--force'])
    onnx.main([str(stock), str(merged), str(tmp_path / 'm.onnx'), '--shape',
               '1', '3', '32', '32'])
    for path in (out, tmp_path / 'm.onnx'):
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o644
    assert str(image) in json.loads(out.read_text())


def test_fingerprint_needs_all_frozen_weights_or_none(trained, tmp_path,
                                                      monkeypatch):
    """One frozen tensor added to an adapter checkpoint does not
    turn the fingerprint check off; it is refused (also with the
    fingerprint override), in the model, the tools and the merge."""
    from mmpetl.fileio.fingerprint import PartialFrozenWeightsError
    vit_a = pretrained_cfg(TINY_VIT, tmp_path / 'a.pth', seed=1)
    vit_b = pretrained_cfg(TINY_VIT, tmp_path / 'b.pth', seed=2)
    cfg = dict(type='mmpetl.ARCBackbone', hidden_dim=4)
    source = MODELS.build(dict(cfg, backbone=vit_a))
    saved = source.state_dict()
    saved['backbone.cls_token'] = source.backbone.cls_token.detach().clone()
    other = MODELS.build(dict(cfg, backbone=vit_b))
    with pytest.raises(PartialFrozenWeightsError,
                       match=r'1 of the \d+ frozen backbone weights'):
        other.load_state_dict(saved)
    monkeypatch.setenv('MMPETL_IGNORE_FINGERPRINT', '1')
    with pytest.raises(PartialFrozenWeightsError):
        other.load_state_dict(saved)
    monkeypatch.delenv('MMPETL_IGNORE_FINGERPRINT')

    # A trained adapter checkpoint with the cls token of its backbone.
    checkpoint = torch.load(trained['checkpoint'], weights_only=False)
    state = checkpoint['state_dict']
    model = build_model(Config.fromfile(trained['configs']['a']))
    state['backbone.backbone.cls_token'] = \
        model.backbone.backbone.cls_token.detach().clone()
    partial = tmp_path / 'partial.pth'
    torch.save(checkpoint, partial)
    other_cfg = trained['configs']['b']
    with pytest.raises(CheckpointError, match='frozen backbone weights'):
        reparameterize_checkpoint(other_cfg, str(partial),
                                  str(tmp_path / 'o.pth'))
    cases = run_cases([
        [['tools/test.py', other_cfg, str(partial), '--work-dir',
          str(tmp_path / 'w')], {}],
        [['tools/train.py', other_cfg, '--work-dir', str(tmp_path / 'w'),
          '--cfg-options', f'load_from={partial}'], {}],
    ])
    for case in cases:
        assert 'frozen backbone weights' in one_line(case)


EPOCH_CHECKPOINTS_AND_VALIDATION = [
    '--cfg-options', 'default_hooks.checkpoint.by_epoch=True',
    'default_hooks.checkpoint.interval=1', 'train_cfg.val_interval=1']


def test_resume_with_validation_is_exact(workspace, tmp_path):
    """Validation after every epoch (which draws from the random
    states) does not make a resumed run differ."""
    config = workspace['configs']['a']
    full, resumed = tmp_path / 'full', tmp_path / 'resumed'
    run_tool('tools/train.py', config, '--work-dir', str(full),
             *EPOCH_CHECKPOINTS_AND_VALIDATION)
    assert (full / 'epoch_1.pth').exists()
    result = run_tool('tools/train.py', config, '--work-dir', str(resumed),
                      '--resume', str(full / 'epoch_1.pth'),
                      *EPOCH_CHECKPOINTS_AND_VALIDATION)
    assert 'will not repeat' not in result.stdout + result.stderr
    assert_resumed(resumed, 'epoch_1.pth')
    assert_same_weights(final_weights(resumed), final_weights(full))


def test_resume_with_validation_is_exact_on_two_processes(workspace,
                                                          tmp_path):
    config = workspace['configs']['a']
    dist_train(config, tmp_path / 'full', *EPOCH_CHECKPOINTS_AND_VALIDATION)
    dist_train(config, tmp_path / 'resumed', '--resume',
               str(tmp_path / 'full' / 'epoch_1.pth'),
               *EPOCH_CHECKPOINTS_AND_VALIDATION)
    assert_resumed(tmp_path / 'resumed', 'epoch_1.pth')
    assert_same_weights(final_weights(tmp_path / 'resumed'),
                        final_weights(tmp_path / 'full'))


def test_resume_says_when_it_cannot_be_exact(trained, tmp_path):
    """Another learning rate or number of epochs, or data loader
    workers on a mid-epoch resume: the resumed run says so, naming it."""
    result = run_tool(
        'tools/train.py', trained['configs']['a'], '--work-dir',
        str(tmp_path), '--resume', str(trained['work_dir'] / 'iter_12.pth'),
        '--cfg-options', 'optim_wrapper.optimizer.lr=0.001',
        'train_cfg.max_epochs=2', 'train_dataloader.num_workers=1',
        'train_dataloader.persistent_workers=False')
    log = result.stdout + result.stderr
    assert 'will not repeat the interrupted one: optim_wrapper.optimizer.lr' \
        ' is 0.001' in log
    assert 'train_dataloader.num_workers is 1, was 0' in log
    assert 'mid-epoch with 1 data loader workers' in log


def test_runner_checkpoints_are_written_atomically(trained, tmp_path):
    """A checkpoint write that fails half-way (here: the file size
    limit, as a full disk does) leaves no file under the checkpoint's
    name, and training stops with one error line."""
    import resource
    limit = os.path.getsize(trained['work_dir'] / 'iter_4.pth') // 2

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    result = subprocess.run(
        [sys.executable, 'tools/train.py', trained['configs']['a'],
         '--work-dir', str(tmp_path)], cwd=ROOT, capture_output=True,
        text=True, preexec_fn=limit_file_size)
    assert 'File too large' in one_error_line(result)
    names = os.listdir(tmp_path)
    assert not [n for n in names if n.endswith('.pth')], names
    assert not osp.exists(tmp_path / 'last_checkpoint')


def test_checkpoint_configs_are_read_as_data(trained, tmp_path):
    """An inferencer given weights without a config reads the
    checkpoint's config as data; code in it is refused, not run."""
    from mmseg.apis import MMSegInferencer
    marker = tmp_path / 'marker'
    evil = tmp_path / 'evil.pth'
    torch.save(dict(meta=dict(cfg=f"import os\nos.system('touch {marker}')\n"
                              "model = dict(type='EncoderDecoder')\n"),
                    state_dict=dict(w=torch.ones(1))), evil)
    with pytest.raises(CheckpointError, match='code, not data'):
        MMSegInferencer(model=None, weights=str(evil))
    assert not marker.exists()
    # What Config.pretty_text writes reads back as Config reads it.
    from mmpetl.fileio.configs import config_as_data
    from mmpetl.models.stock_checkpoint import stock_config
    text = stock_config(Config.fromfile(trained['configs']['a'])).pretty_text
    assert config_as_data(text, 'x') == \
        Config.fromstring(text, '.py')._cfg_dict.to_dict()


def test_train_errors_are_one_line(trained, tmp_path):
    """What tools/test.py checks before heavy set-up,
    tools/train.py checks too: exit status 2 and one line for each."""
    config = trained['configs']['a']
    bad = {}
    for name, text in (('empty.py', ''), ('broken.py', 'model = dict(\n'),
                       ('raising.py', "raise RuntimeError('boom')\n"),
                       ('nobase.py', "_base_ = ['./missing_base.py']\n")):
        bad[name] = tmp_path / name
        bad[name].write_text(text)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(open(trained['checkpoint'], 'rb').read()[:5000])
    kinds = {}
    for kind in ('sparse', 'meta', 'int64'):
        checkpoint = torch.load(trained['checkpoint'], weights_only=False)
        state = checkpoint['state_dict']
        key = next(k for k in state if '.adapter.' in k)
        state[key] = dict(sparse=state[key].to_sparse(),
                          meta=state[key].to('meta'),
                          int64=state[key].long())[kind]
        kinds[kind] = tmp_path / f'{kind}.pth'
        torch.save(checkpoint, kinds[kind])
    work = ['--work-dir', str(tmp_path / 'w')]
    unwritable = '/proc/mmpetl' if os.geteuid() == 0 else '/mmpetl-no'
    cases = [
        ([bad['empty.py'], *work], 'cannot train: it has no model'),
        ([bad['broken.py'], *work], 'cannot read config'),
        ([bad['raising.py'], *work], 'cannot read config'),
        ([bad['nobase.py'], *work], 'cannot read config'),
        ([trained['checkpoint'], *work], 'cannot read config'),
        ([config, *work, '--cfg-options',
          'model.backbone.type=mmpetl.RepAdapterBackbon'],
         'did you mean RepAdapterBackbone'),
        ([config, *work, '--cfg-options', 'model.backbone.sites=wings'],
         'cannot build the model'),
        ([config, *work, '--cfg-options',
          'model.backbone.backbone.init_cfg.checkpoint=/no/such/file.pth'],
         'checkpoint /no/such/file.pth does not exist'),
        ([config, *work, '--amp'], '--amp needs a GPU'),
        ([config, *work, '--cfg-options', 'model.backbone.sites=()'],
         'sites is empty'),
        ([config, *work, '--cfg-options', 'model.backbone.hidden_dim=0'],
         'has an empty trainable weight'),
        ([config, *work, '--resume', truncated],
         'is not a PyTorch checkpoint'),
        ([config, *work, '--resume', trained['pretrained']['a']],
         'does not match the config'),
        ([config, '--work-dir', unwritable], 'output folder'),
        ([config, *work, '--resume', kinds['sparse']], 'layout'),
        ([config, *work, '--resume', kinds['meta']], 'meta device'),
        ([config, *work, '--cfg-options', f'load_from={kinds["int64"]}'],
         'torch.int64'),
    ]
    if torch.cuda.is_available():
        cases = [c for c in cases if '--amp' not in c[0]]
    results = run_cases([[['tools/train.py', *map(str, args)], {}]
                         for args, _ in cases])
    for (args, expected), result in zip(cases, results):
        assert result[0] == 2, (args, result[1][-1000:])
        assert expected in one_line(result), (args, result[1][-500:])
    assert not (tmp_path / 'w').exists() or not [
        n for n in os.listdir(tmp_path / 'w') if n.endswith('.pth')]


def test_nan_checks_do_not_expand_views(tmp_path):
    """A small file holding a huge stride-0 view is checked by its
    stored values, not expanded (10^12 elements would be 4 TB)."""
    from mmpetl.fileio.state_dicts import check_finite
    view = torch.full((1, ), float('nan')).expand(10**6, 10**6)
    path = tmp_path / 'view.pth'
    torch.save(dict(state_dict=dict(w=view)), path)
    assert os.path.getsize(path) < 10**6
    state = load_checkpoint_dict(str(path))['state_dict']
    with pytest.raises(CheckpointError, match='w holds 1 NaN/Inf'):
        check_finite(state, 'checkpoint')


def test_adapter_switcher_refuses_nan_adapters(trained, tmp_path):
    """A NaN adapter is not served."""
    from mmpetl.apis.serving import AdapterSwitcher
    bad = tmp_path / 'nan.pth'
    key = nan_checkpoint(trained, bad)
    switcher = AdapterSwitcher()
    with pytest.raises(CheckpointError, match=f'{key} holds'):
        switcher.add_task('digits', trained['configs']['a'], str(bad))


def test_inference_on_unmerged_checkpoint_is_one_line(trained, tmp_path):
    """Tools/deployment/inference.py on a checkpoint as training
    writes it (not merged): one line that says to merge it."""
    import cv2
    import numpy as np
    image = tmp_path / 'img.png'
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    merged, stock = tmp_path / 'm.pth', tmp_path / 'stock.py'
    reparameterize_checkpoint(trained['configs']['a'], trained['checkpoint'],
                              str(merged), out_config=str(stock))
    result = run_tool('tools/deployment/inference.py', str(stock),
                      trained['checkpoint'], str(image), expect_ok=False)
    error = one_error_line(result)
    assert 'merge it first with tools/reparam.py' in error
    assert 'weights_only=False' not in result.stderr


def test_demo_test_step_runs_twice(trained, tmp_path):
    """The demo's test step replaces its own metrics on a second
    run (`make demo` twice)."""
    demo = load_tool('tools/demo.py')
    for _ in range(2):
        accuracy = demo.test(trained['configs']['a'], trained['checkpoint'],
                             str(tmp_path / 'test'))
    assert 0 <= accuracy <= 100


# ------------------------------------------- round 3 (issue 29 items 1-4)
def craft(trained, path, edit):
    """The trained checkpoint with ``edit(checkpoint)`` applied, at
    ``path``."""
    checkpoint = torch.load(trained['checkpoint'], weights_only=False)
    edit(checkpoint)
    torch.save(checkpoint, path)
    return str(path)


@pytest.mark.parametrize('where, text', [
    ('meta', "model = dict(type='os.system', command='touch {marker}')\n"),
    ('message_hub', "model = dict(type='posix.system', "
     "command='touch {marker}')\n"),
    ('meta', "default_scope = 'mmseg'\nmodel = dict(type='EncoderDecoder', "
     "backbone=dict(type='mmseg.backbones.os.system'))\n"),
    ('meta', "default_scope = 'os'\nmodel = dict(type='system')\n"),
    ('meta', "custom_imports = dict(imports=['os'])\n"
     "model = dict(type='EncoderDecoder')\n"),
    ('resume', "import os\nos.system('touch {marker}')\n"),
])
def test_checkpoint_configs_name_only_registered_types(tmp_path, where,
                                                       text):
    """Item 1: a config read from a checkpoint (meta or message hub) names
    registered types of known scopes only; anything else is refused in one
    line before a registry sees it, and no code runs."""
    from mmseg.apis import MMSegInferencer
    marker = tmp_path / 'marker'
    cfg = text.format(marker=marker)
    checkpoint = dict(state_dict=dict(w=torch.ones(1)))
    if where == 'meta':
        checkpoint['meta'] = dict(cfg=cfg)
    elif where == 'message_hub':
        checkpoint['message_hub'] = dict(runtime_info=dict(cfg=cfg))
    else:  # mmcv's key, which Runner.resume reads with Config.fromstring
        checkpoint['meta'] = dict(config=cfg, epoch=1, iter=1)
    path = tmp_path / 'evil.pth'
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match='could run code|not data') \
            as e:
        if where == 'resume':
            loaded = _load_checkpoint(str(path))
            Config.fromstring(loaded['meta']['config'], file_format='.py')
        else:
            MMSegInferencer(model=None, weights=str(path))
    assert '\n' not in str(e.value)
    assert not marker.exists()


def test_schemes_registered_later_load_safely(monkeypatch):
    """Item 1: a checkpoint scheme registered after ``import mmpetl`` (or
    a safe scheme's loader replaced) goes through the loading policy when
    a checkpoint is loaded."""
    from mmengine.runner.checkpoint import CheckpointLoader

    from mmpetl.fileio.safe_load import (load_url_checkpoint,
                                         register_checkpoint_loaders)
    calls = []

    def unsafe(filename, map_location=None):
        calls.append(filename)
        return dict(state_dict=dict(w=torch.ones(1)))

    CheckpointLoader.register_scheme('later://', unsafe)
    CheckpointLoader.register_scheme('https://', unsafe, force=True)
    try:
        with pytest.raises(UnsafeCheckpointError, match='no safe loader'):
            _load_checkpoint('later://model.pth')
        assert CheckpointLoader._get_checkpoint_loader(
            'https://x/y.pth') is load_url_checkpoint
        assert calls == []
        monkeypatch.setenv('MMPETL_TRUSTED_CHECKPOINTS', '1')
        assert 'w' in _load_checkpoint('later://model.pth')['state_dict']
        assert calls == ['later://model.pth']
    finally:
        CheckpointLoader._schemes.pop('later://')
        register_checkpoint_loaders()


def test_one_output_guard_for_every_writer(trained, tmp_path):
    """Item 2: log files (checked before they are opened), test.py's
    checkpoint_check.log, the training benchmark's --out (configs, bases,
    a linked folder, an existing file without --force) and test.py's
    --metrics-out (annotation files) never replace an input; unwritable
    destinations fail before the work."""
    config = trained['configs']['a']
    base = osp.join(osp.dirname(config), 'base.py')
    checkpoint = trained['checkpoint']
    work = tmp_path / 'w'
    work.mkdir()
    named = work / 'checkpoint_check.log'  # a checkpoint of that name
    named.write_bytes(open(checkpoint, 'rb').read())
    existing = tmp_path / 'old.log'
    existing.write_text('keep')
    annotations = str(trained['root'] / 'data' / 'test.txt')
    # The training benchmark over a config folder of its own.
    configs = tmp_path / 'configs'
    (configs / 'lora').mkdir(parents=True)
    (configs / 'base.py').write_text('x = 1\n')
    method = configs / 'lora' / 'vit-b16_lora_cifar.py'
    method.write_text("_base_ = ['../base.py']\n")
    (tmp_path / 'link').symlink_to(configs)
    bench = ['tools/benchmarks/training.py', '--task', 'cls',
             '--config-dir', str(configs)]
    unwritable = '/proc/mmpetl' if os.geteuid() == 0 else '/mmpetl-no'
    inputs = (config, base, checkpoint, str(named), annotations,
              str(existing), str(method), str(configs / 'base.py'))
    hashes = {p: sha256(p) for p in inputs}
    reparam = ['tools/reparam.py', config, checkpoint,
               str(tmp_path / 'm.pth')]
    cases = [
        (reparam + ['--log-file', checkpoint, '--force'], 'is an input'),
        (reparam + ['--log-file', base, '--force'], 'is an input'),
        (reparam + ['--log-file', str(tmp_path)], 'is a directory'),
        (reparam + ['--log-file', str(existing)], 'exists; pass --force'),
        (reparam + ['--log-file', f'{unwritable}/r.log'], 'output folder'),
        (['tools/test.py', config, str(named), '--work-dir', str(work)],
         'is an input'),
        (['tools/test.py', config, checkpoint, '--work-dir', str(work),
          '--metrics-out', annotations, '--force'], 'is an input'),
        (bench + ['--out', str(configs / 'base.py'), '--force'],
         'is an input'),
        (bench + ['--out', str(tmp_path / 'link' / 'lora' /
                               method.name), '--force'], 'is an input'),
        (bench + ['--out', str(existing)], 'exists; pass --force'),
        (bench + ['--out', f'{unwritable}/o.json'], 'output folder'),
    ]
    results = run_cases([[list(map(str, argv)), {}] for argv, _ in cases])
    for (argv, expected), result in zip(cases, results):
        assert expected in one_line(result), argv
    assert {p: sha256(p) for p in inputs} == hashes
    assert not (tmp_path / 'm.pth').exists()


def test_deployment_guard_knows_bases_and_input_folders(trained, tmp_path,
                                                        capsys):
    """Item 2: the deployment tools never write over a _base_ of their
    config, nor over an image inside an input folder (also with
    --force)."""
    import cv2
    import numpy as np
    merged, stock = tmp_path / 'm.pth', tmp_path / 'stock.py'
    reparameterize_checkpoint(trained['configs']['a'], trained['checkpoint'],
                              str(merged), out_config=str(stock))
    child = tmp_path / 'child.py'
    child.write_text("_base_ = ['./stock.py']\n")
    images = tmp_path / 'images'
    images.mkdir()
    image = images / 'a.png'
    cv2.imwrite(str(image), np.full((32, 32, 3), 128, np.uint8))
    inference = load_tool('tools/deployment/inference.py')
    onnx = load_tool('tools/deployment/pytorch2onnx.py')
    hashes = {p: sha256(p) for p in (stock, image)}
    for main, argv in ((onnx.main, [child, merged, stock, '--force']),
                       (inference.main, [child, merged, stock, '--out',
                                         stock, '--force']),
                       (inference.main, [stock, merged, images, '--out',
                                         image, '--force'])):
        with pytest.raises(SystemExit) as exit_:
            main([str(a) for a in argv])
        assert exit_.value.code == 2
        err = capsys.readouterr().err.strip()
        assert 'is an input' in err and '\n' not in err, err
    assert {p: sha256(p) for p in hashes} == hashes


def test_failed_writes_leave_nothing(tmp_path):
    """Item 2: a write that fails (file size limit, folder removed
    mid-run) is one OutputError line and leaves nothing under the final
    name."""
    import shutil

    from mmpetl.apis.tool_options import write_metrics
    from mmpetl.fileio.outputs import atomic_output
    gone = tmp_path / 'gone'
    gone.mkdir()
    with pytest.raises(OutputError, match='cannot write'):
        with atomic_output(str(gone / 'a.json')) as tmp:
            open(tmp, 'w').write('{}')
            shutil.rmtree(gone)
    with pytest.raises(OutputError, match='cannot write'):
        write_metrics(dict(acc=1.), str(gone / 'metrics.json'), 'json')
    assert not gone.exists()
    script = (
        'import resource, signal, sys, torch\n'
        'signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n'
        'resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n'
        'from mmpetl.fileio.errors import OutputError\n'
        'from mmpetl.fileio.outputs import save_checkpoint, write_text\n'
        'for write in (lambda p: save_checkpoint(torch.zeros(10**5), p),\n'
        '              lambda p: write_text(p, "x" * 10**5)):\n'
        '    try:\n'
        '        write(sys.argv[1])\n'
        '    except OutputError as e:\n'
        '        print("error:", e)\n')
    out = tmp_path / 'big.pth'
    result = subprocess.run([sys.executable, '-c', script, str(out)],
                            cwd=ROOT, capture_output=True, text=True)
    lines = result.stdout.splitlines()
    assert len(lines) == 2 and all('cannot write' in line for line in lines
                                   ), result.stdout + result.stderr[-2000:]
    assert os.listdir(tmp_path) == []


def tool_exit(name, argv, monkeypatch, capsys, env=None):
    """Run ``parse_args`` of a tool (``main`` where given) in this process
    with ``argv``; its exit status and its standard error."""
    module = load_tool(name)
    monkeypatch.setattr(sys, 'argv', [name, *map(str, argv)])
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    entry = module.main if name.startswith('tools/model_converters') else \
        module.parse_args
    with pytest.raises(SystemExit) as exit_:
        entry()
    return exit_.value.code, capsys.readouterr().err


NO_GPU = not torch.cuda.is_available()
INFERENCE_BENCH = 'tools/benchmarks/inference.py'
TRAINING_BENCH = 'tools/benchmarks/training.py'


@pytest.mark.parametrize('tool, argv, message', [
    ('tools/reparam.py', ['{config}', '{ckpt}', 'o.pth', '--tolerance',
                          'nan'], "'nan' is not a finite number > 0"),
    ('tools/reparam.py', ['{config}', '{ckpt}', 'o.pth', '--verify-shape',
                          '0'], '0 is not a whole number >= 1'),
    ('tools/reparam.py', ['{config}', '{ckpt}', 'o.pth', '--verify-shape',
                          '3', '-32', '32'], 'not a whole number >= 1'),
    ('tools/reparam.py', ['nope.py', '{ckpt}', 'o.pth'], 'does not exist'),
    ('tools/test.py', ['{config}', '{ckpt}', '--interval', '0'], '>= 1'),
    ('tools/train.py', ['{config}', '--work-dir', '{ckpt}'], 'is a file'),
    (TRAINING_BENCH, ['--rounds', '0'], '0 is not a whole number >= 1'),
    (TRAINING_BENCH, ['--batch-size', '0'], 'not a whole number >= 1'),
    (TRAINING_BENCH, ['--size', '-32'], '-32 is not a whole number >= 1'),
    (TRAINING_BENCH, ['--threads', '-1'], '-1 is not a whole number'),
    (TRAINING_BENCH, ['--device', 'nope'], "'nope' is not a device"),
    (TRAINING_BENCH, ['--task', 'cls', '--backbone', 'no/such.py'],
     '--backbone no/such.py does not exist'),
    (INFERENCE_BENCH, ['--arch', 'nope'], '--arch nope: mmpretrain.'),
    (INFERENCE_BENCH, ['--backbone', 'mmpretrain.Nope'],
     'is not a registered model'),
    (INFERENCE_BENCH, ['--arch', '{"embed_dims": NaN}'],
     'not JSON with finite numbers'),
    (INFERENCE_BENCH, ['--rounds', '0'], 'not a whole number >= 1'),
    ('tools/benchmarks/switching.py', ['--tasks', '0'], '>= 1'),
    ('tools/benchmarks/switching.py', ['--rounds', '-1'], '>= 1'),
    ('tools/suites/vtab.py', ['--search', 'lr=abc'], "'abc' is not a value"),
    ('tools/suites/vtab.py', ['--search', 'lr=-1e-3'], 'lr must be > 0'),
    ('tools/suites/vtab.py', ['--search', 'scale=1e999'], 'not a finite'),
    ('tools/suites/vtab.py', ['--seeds', '0'], 'not a whole number >= 1'),
    ('tools/suites/vtab.py', ['--work-dir', '{ckpt}'], 'is a file'),
    ('tools/suites/vtab.py', ['--costs', 'no.json'], 'does not exist'),
    ('tools/deployment/pytorch2onnx.py', ['{config}', '{ckpt}', 'o.onnx',
                                          '--shape', '1', '0'], '>= 1'),
    ('tools/deployment/pytorch2onnx.py', ['{config}', '{ckpt}', 'o.onnx',
                                          '--tolerance', 'inf'], 'finite'),
    ('tools/deployment/inference.py', ['{config}', '{ckpt}', '{config}',
                                       '--device', 'nope'], 'not a device'),
] + [(tool, ['--device', 'cuda'], 'no cuda device is available')
     for tool in (TRAINING_BENCH, INFERENCE_BENCH) if NO_GPU])
def test_tool_flags_refuse_nonsense_in_one_line(trained, tool, argv, message,
                                                monkeypatch, capsys):
    """Item 3: every tool's flags are typed; nonsense is one line, exit
    status 2, while parsing (before any work)."""
    argv = [a.replace('{config}', trained['configs']['a']).replace(
        '{ckpt}', trained['checkpoint']) for a in argv]
    code, err = tool_exit(tool, argv, monkeypatch, capsys)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and message in lines[0], err


def test_invalid_switch_and_costs_are_refused(tmp_path, monkeypatch, capsys):
    """Item 3: vtab.py checks MMPETL_TRUSTED_CHECKPOINTS first; --costs
    ratios must be finite and > 0."""
    from mmpetl.suites.task_suite import CostsError, load_costs
    code, err = tool_exit('tools/suites/vtab.py', [], monkeypatch, capsys,
                          env=dict(MMPETL_TRUSTED_CHECKPOINTS='maybe'))
    assert code == 2 and "MMPETL_TRUSTED_CHECKPOINTS='maybe'" in err
    for text in ('{"lora": {"step_time_rel_full": NaN}}',
                 '{"lora": {"step_time_rel_full": -0.5}}',
                 '{"lora": {"step_time_rel_full": 1e999}}',
                 '{"lora": {"step_time_rel_full": 0}}'):
        path = tmp_path / 'costs.json'
        path.write_text(text)
        with pytest.raises(CostsError, match='--costs'):
            load_costs([str(path)])


def test_npz_object_arrays_are_one_line(tmp_path, monkeypatch, capsys):
    """Item 3: a .npz holding an object array (pickled) is refused in one
    line by the converter, and nothing is written."""
    import numpy as np
    path = tmp_path / 'vit.npz'
    np.savez(path, **{'embedding/kernel': np.array([{'a': 1}], object)})
    code, err = tool_exit('tools/model_converters/vit_npz2mmpretrain.py',
                          [path, tmp_path / 'o.pth'], monkeypatch, capsys)
    assert code == 2 and "'embedding/kernel' is not an array of numbers" in \
        err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / 'o.pth').exists()


def set_fingerprint(value):
    def edit(checkpoint):
        metadata = checkpoint['state_dict']._metadata
        entry = next(v for v in metadata.values()
                     if 'backbone_fingerprint' in v)
        if value is None:
            del entry['backbone_fingerprint']['digest']
        else:
            entry['backbone_fingerprint'] = value
    return edit


@pytest.mark.parametrize('fingerprint', [
    'abc', None, dict(digest=7, pretrained=None), [1, 2]])
def test_crafted_fingerprints_are_one_line(trained, tmp_path, fingerprint):
    """Item 3: a fingerprint that is a string, lacks its digest or holds
    an int is refused in one line by the merge and by serving (tools/test.py
    and resume load the same way)."""
    from mmpetl.apis.serving import AdapterSwitcher
    path = craft(trained, tmp_path / 'f.pth', set_fingerprint(fingerprint))
    with pytest.raises(CheckpointError, match='fingerprint is malformed'):
        reparameterize_checkpoint(trained['configs']['a'], path,
                                  str(tmp_path / 'o.pth'))
    with pytest.raises(CheckpointError, match='fingerprint is malformed'):
        AdapterSwitcher().add_task('t', trained['configs']['a'], path)
    assert not (tmp_path / 'o.pth').exists()


def test_crafted_resume_states_are_one_line(trained, tmp_path):
    """Item 3: a resume state with rng = [] or a bad torch RNG state, and
    a crafted fingerprint given to tools/test.py, are one line before any
    training or testing."""
    from mmpetl.engine.hooks.exact_resume_hook import check_resume_state

    def rng(value):
        return lambda c: c['mmpetl_resume'].update(rng=value)

    def torch_state(c):
        c['mmpetl_resume']['rng'][0]['torch'] = torch.zeros(
            3, dtype=torch.uint8)

    crafted = [craft(trained, tmp_path / f'{i}.pth', edit) for i, edit in
               enumerate((rng([]), torch_state, rng('x')))]
    for path in crafted:
        with pytest.raises(CheckpointError, match='resume state'):
            check_resume_state(torch.load(path, weights_only=False), path)
    fingerprint = craft(trained, tmp_path / 'f.pth', set_fingerprint('abc'))
    config = trained['configs']['a']
    work = ['--work-dir', str(tmp_path / 'w')]
    results = run_cases(
        [[['tools/train.py', config, *work, '--resume', p], {}]
         for p in crafted[:2]] +
        [[['tools/test.py', config, fingerprint, *work], {}]])
    assert 'resume state' in one_line(results[0])
    assert 'resume state' in one_line(results[1])
    assert 'fingerprint is malformed' in one_line(results[2])


def test_float8_weights_in_the_nan_check():
    """Item 3: float8 tensors (no isfinite kernel) are checked, converted
    to float32, not a traceback."""
    from mmpetl.fileio.state_dicts import check_finite
    if not hasattr(torch, 'float8_e4m3fn'):
        pytest.skip('this torch has no float8')
    finite = torch.tensor([1., -2., 0.5]).to(torch.float8_e5m2)
    check_finite(dict(w=finite), 'checkpoint')
    for dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        bad = torch.tensor([1., float('nan'), 2.]).to(dtype)
        with pytest.raises(CheckpointError, match='w holds 1 NaN/Inf'):
            check_finite(dict(w=bad), 'checkpoint')


def test_adapter_switcher_refuses_non_finite_folds(trained, tmp_path):
    """Item 4: finite adapters (1e20) that fold to Inf are not served, as
    the first task or a later one; tools/reparam.py refuses the same
    file."""
    from mmpetl.apis.serving import AdapterSwitcher

    def huge(checkpoint):
        for key, value in checkpoint['state_dict'].items():
            if '.adapter.' in key:
                value.fill_(1e20)

    path = craft(trained, tmp_path / 'huge.pth', huge)
    assert all(torch.isfinite(v).all() for v in
               load_checkpoint_dict(path)['state_dict'].values())
    config = trained['configs']['a']
    with pytest.raises(CheckpointError, match='merged model has non-finite'):
        reparameterize_checkpoint(config, path, str(tmp_path / 'o.pth'))
    with pytest.raises(CheckpointError, match='merged model has non-finite'):
        AdapterSwitcher().add_task('huge', config, path)
    switcher = AdapterSwitcher()
    switcher.add_task('good', config, trained['checkpoint'])
    with pytest.raises(CheckpointError, match='merged model has non-finite'):
        switcher.add_task('huge', config, path)
    assert switcher.tasks == ['good']
    switcher.switch('good')
    assert all(torch.isfinite(p).all() for p in switcher.model.parameters())
