# Copyright (c) mmpetl contributors. All rights reserved.
"""The tools end to end: train, resume, reparam, test, dist_train, on tiny
real data (scikit-learn's digits) and a tiny ViT."""
import json
import os
import os.path as osp
import shutil
import socket
import subprocess
import sys

import mmengine
import pytest
import torch
from mmengine.config import Config

from mmpetl.apis.reparam import build_model, reparameterize_checkpoint
from mmpetl.fileio.checkpoint_io import CheckpointError
from tests.support.tools import ROOT, run_tool, sha256



@pytest.fixture(scope='module')
def trained(quickstart):
    """RepAdapter trained 2 epochs through tools/train.py."""
    work_dir = quickstart['root'] / 'work_repadapter'
    result = run_tool('tools/train.py', quickstart['configs']['repadapter'],
                      '--work-dir', str(work_dir))
    return dict(quickstart, work_dir=work_dir, log=result.stdout +
                result.stderr)


def test_train_saves_only_trained_weights(trained):
    log = trained['log']
    assert 'Trainable parameters:' in log
    checkpoint = torch.load(trained['work_dir'] / 'epoch_2.pth',
                            weights_only=False)
    keys = set(checkpoint['state_dict'])
    model = build_model(Config.fromfile(trained['configs']['repadapter']))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert keys == trainable
    assert any('.adapter.' in k for k in keys) and 'head.fc.weight' in keys
    # The end-of-training hook wrote the merged checkpoint and stock config,
    # from the model the run trained.
    merged_cfg = Config.fromfile(trained['work_dir'] /
                                 'epoch_2_merged_config.py')
    stock = build_model(merged_cfg)
    merged = torch.load(trained['work_dir'] / 'epoch_2_merged.pth',
                        weights_only=False)
    stock.load_state_dict(merged['state_dict'], strict=True)
    # Loading the adapter checkpoint onto the pre-trained backbone restores
    # that model: a fresh build does not compute it, the loaded one does.
    inputs = torch.randn(4, 3, 32, 32,
                         generator=torch.Generator().manual_seed(0))
    model.eval()
    stock.eval()
    with torch.no_grad():
        expected = stock(inputs, mode='tensor')
        assert not torch.allclose(model(inputs, mode='tensor'), expected,
                                  atol=1e-4)
        model.load_state_dict(checkpoint['state_dict'], strict=True)
        torch.testing.assert_close(model(inputs, mode='tensor'), expected,
                                   rtol=1e-4, atol=1e-5)


def test_resume_continues_from_checkpoint(trained, tmp_path):
    work_dir = tmp_path / 'resumed'
    result = run_tool('tools/train.py', trained['configs']['repadapter'],
                      '--work-dir', str(work_dir), '--resume',
                      str(trained['work_dir'] / 'epoch_1.pth'))
    log = result.stdout + result.stderr
    assert 'resumed epoch: 1' in log
    assert (work_dir / 'epoch_2.pth').exists()
    assert not (work_dir / 'epoch_1.pth').exists()


def test_reparam_and_test_give_the_same_metrics(trained, tmp_path):
    config = trained['configs']['repadapter']
    checkpoint = str(trained['work_dir'] / 'epoch_2.pth')
    before = sha256(checkpoint)
    out_ckpt, out_cfg = tmp_path / 'merged.pth', tmp_path / 'stock.py'
    result = run_tool('tools/reparam.py', config, checkpoint, str(out_ckpt),
                      '--out-config', str(out_cfg), '--verify')
    assert 'verified' in result.stdout
    assert sha256(checkpoint) == before
    stock_text = out_cfg.read_text()
    assert 'mmpetl' not in stock_text

    metrics = {}
    for name, cfg, ckpt in (('adapter', config, checkpoint),
                            ('merged', str(out_cfg), str(out_ckpt))):
        out = tmp_path / f'{name}.json'
        run_tool('tools/test.py', cfg, ckpt, '--work-dir',
                 str(tmp_path / name), '--metrics-out', str(out))
        metrics[name] = json.loads(out.read_text())['accuracy/top1']
    num_test = sum(1 for _ in open(osp.join(
        Config.fromfile(config).data_root, 'test.txt')))
    # Equal up to at most one prediction flipped by float rounding.
    assert abs(metrics['adapter'] - metrics['merged']) <= 100 / num_test


def test_reparam_refuses_bad_input_and_writes_nothing(trained, tmp_path):
    config = trained['configs']['repadapter']
    checkpoint = str(trained['work_dir'] / 'epoch_2.pth')
    out = str(tmp_path / 'out.pth')
    text_file = tmp_path / 'notes.pth'
    text_file.write_text('not a checkpoint')
    merged = str(trained['work_dir'] / 'epoch_2_merged.pth')
    stock_cfg = str(trained['work_dir'] / 'epoch_2_merged_config.py')
    broken_cfg = tmp_path / 'broken.py'
    broken_cfg.write_text('model = dict(\n')
    no_pretrained_cfg = tmp_path / 'no_pretrained.py'
    no_pretrained_cfg.write_text(
        f"_base_ = ['{config}']\nmodel = dict(backbone=dict(backbone=dict("
        f"init_cfg=dict(checkpoint='{tmp_path / 'gone.pth'}'))))\n")
    cases = [
        ((str(broken_cfg), checkpoint, out), 'cannot read config'),
        ((str(no_pretrained_cfg), checkpoint, out), 'cannot build the model'),
        ((config, str(tmp_path / 'missing.pth'), out), 'does not exist'),
        ((str(tmp_path / 'missing.py'), checkpoint, out), 'does not exist'),
        ((config, str(text_file), out), 'is not a PyTorch checkpoint'),
        ((trained['configs']['arc'], checkpoint, out), 'does not match'),
        ((stock_cfg, merged, out), 'has no adapters'),
        ((config, merged, out), 'already merged'),
        ((config, trained['pretrained'], out), 'holds no adapter weights'),
        ((config, checkpoint, checkpoint), 'is an input'),
    ]
    for args, message in cases:
        with pytest.raises(CheckpointError, match=message):
            reparameterize_checkpoint(*args)
        assert not os.path.exists(out)
    assert sorted(os.listdir(tmp_path)) == [
        'broken.py', 'no_pretrained.py', 'notes.pth']

    # The CLI: one error line, exit 2; an existing output needs --force.
    existing = tmp_path / 'existing.pth'
    existing.write_bytes(b'keep me')
    result = run_tool('tools/reparam.py', config, checkpoint, str(existing),
                      expect_ok=False)
    assert result.returncode == 2
    assert result.stderr.strip().count('\n') == 0
    assert 'exists; pass --force' in result.stderr
    assert existing.read_bytes() == b'keep me'
    run_tool('tools/reparam.py', config, checkpoint, str(existing), '--force')
    assert torch.load(existing, weights_only=False)['meta']['mmpetl'][
        'merged']


def test_test_tool_refuses_bad_input(trained, tmp_path):
    config = trained['configs']['repadapter']
    text_file = tmp_path / 'notes.pth'
    text_file.write_text('not a checkpoint')
    wrong_sites = tmp_path / 'wrong_sites.py'
    wrong_sites.write_text(f"_base_ = ['{config}']\n"
                           "model = dict(backbone=dict(sites=['nope']))\n")
    cases = [
        ((config, str(tmp_path / 'missing.pth')), 'does not exist'),
        ((config, str(text_file)), 'is not a PyTorch checkpoint'),
        ((trained['configs']['arc'], str(trained['work_dir'] /
                                         'epoch_2.pth')), 'does not match'),
        ((config, str(trained['work_dir'] / 'epoch_2_merged.pth')),
         'merged'),
        # An input error raised while the runner builds the model.
        ((str(wrong_sites), str(trained['work_dir'] / 'epoch_2.pth')),
         "no site kind(s) ['nope']"),
    ]
    for args, message in cases:
        result = run_tool('tools/test.py', *args, '--work-dir',
                          str(tmp_path / 'w'), expect_ok=False)
        assert result.returncode == 2, result.stderr[-2000:]
        error = [line for line in result.stderr.splitlines()
                 if line.startswith('error:')]
        assert len(error) == 1 and message in error[0], result.stderr[-2000:]


def free_port():
    with socket.socket() as probe:  # a fixed port may be taken
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def test_dist_train_two_processes_without_gpu(quickstart, tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()))
    result = subprocess.run(
        ['bash', 'tools/dist_train.sh', quickstart['configs']['linear-probe'],
         '2', '--work-dir', str(tmp_path), '--cfg-options',
         'train_cfg.max_epochs=1', 'train_cfg.val_interval=1'],
        cwd=ROOT, env=env, capture_output=True, text=True)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert (tmp_path / 'epoch_1.pth').exists()
    assert 'world_size: 2' in log or 'Distributed training: True' in log


def test_dist_test_two_processes_give_single_process_metrics(
        trained, tmp_path):
    config = trained['configs']['repadapter']
    checkpoint = str(trained['work_dir'] / 'epoch_2.pth')
    run_tool('tools/test.py', config, checkpoint, '--work-dir',
             str(tmp_path / 'one'), '--metrics-out', str(tmp_path / 'one.json'))
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(free_port()))
    result = subprocess.run(
        ['bash', 'tools/dist_test.sh', config, checkpoint, '2', '--work-dir',
         str(tmp_path / 'two'), '--out', str(tmp_path / 'two.yaml'),
         '--out-item', 'metrics'],
        cwd=ROOT, env=env, capture_output=True, text=True)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log[-4000:]
    assert 'Distributed launcher: pytorch' in log and 'GPU number: 2' in log
    one = json.loads((tmp_path / 'one.json').read_text())
    two = mmengine.load(str(tmp_path / 'two.yaml'))
    assert one == two and set(one) == {'accuracy/top1'}


def test_test_tool_options(trained, tmp_path):
    """--out (predictions), --show-dir/--interval, --no-pin-memory, --amp,
    --tta, each with mmpretrain's meaning."""
    checkpoint = str(trained['work_dir'] / 'epoch_2.pth')
    config = tmp_path / 'pinned.py'
    config.write_text(f"_base_ = ['{trained['configs']['repadapter']}']\n"
                      'test_dataloader = dict(pin_memory=True)\n')
    num_test = sum(1 for _ in open(osp.join(
        Config.fromfile(str(config)).data_root, 'test.txt')))

    def test(name, *options):
        run_tool('tools/test.py', str(config), checkpoint, '--work-dir',
                 str(tmp_path / name), '--metrics-out',
                 str(tmp_path / f'{name}.json'), '--out',
                 str(tmp_path / f'{name}.pkl'), *options)
        predictions = mmengine.load(str(tmp_path / f'{name}.pkl'))
        assert len(predictions) == num_test
        scores = torch.stack([p['pred_score'] for p in predictions])
        labels = torch.stack([p['gt_label'] for p in predictions]).flatten()
        top1 = json.loads((tmp_path / f'{name}.json').read_text())[
            'accuracy/top1']
        # The metrics are those of the written predictions.
        assert abs(100 * (scores.argmax(1) == labels).float().mean() -
                   top1) < 1e-4
        return scores

    plain = test('plain', '--show-dir', str(tmp_path / 'vis'), '--interval',
                 '100', '--no-pin-memory')
    # Every 100th sample is drawn (mmpretrain's VisualizationHook, which
    # counts a short last batch's start from that batch's own size, so it
    # may miss one sample there).
    batch = Config.fromfile(str(config)).test_dataloader.batch_size
    full = num_test - num_test % batch
    assert -(-full // 100) <= len(os.listdir(tmp_path / 'vis')) <= -(
        -num_test // 100)
    dumped = Config.fromfile(str(tmp_path / 'plain' / 'pinned.py'))
    assert dumped.test_dataloader.pin_memory is False

    amp = test('amp', '--amp')  # bfloat16 autocast on CPU
    assert not torch.equal(amp, plain)
    assert (amp.argmax(1) == plain.argmax(1)).float().mean() > 0.9
    assert (amp - plain).abs().max() < 0.1

    tta = test('tta', '--tta')  # scores averaged with the flipped image
    assert not torch.allclose(tta, plain, atol=1e-4)
    assert torch.allclose(tta.sum(1), torch.ones(num_test), atol=1e-5)


def test_test_tool_option_errors_come_first(trained, tmp_path):
    config = trained['configs']['repadapter']
    checkpoint = str(trained['work_dir'] / 'epoch_2.pth')
    cases = [
        (('--out-item', 'metrics'), '--out-item needs --out'),
        (('--out', str(tmp_path / 'p.json')), 'pickle'),
        (('--out', str(tmp_path / 'm.txt'), '--out-item', 'metrics'),
         'metrics are written as'),
        (('--out', str(tmp_path / 'gone' / 'p.pkl')), 'does not exist'),
    ]
    no_hook = tmp_path / 'no_hook.py'
    no_hook.write_text(f"_base_ = ['{config}']\n"
                       'default_hooks = dict(visualization=None)\n')
    cases = [((config, *options), message) for options, message in cases]
    other_scope = tmp_path / 'other_scope.py'
    other_scope.write_text(f"_base_ = ['{config}']\ndefault_scope = 'mmseg'\n")
    cases += [((str(no_hook), '--show-dir', 'vis'), 'visualization hook'),
              ((str(other_scope), '--tta'),
               '--tta needs tta_model and tta_pipeline')]
    for options, message in cases:
        result = run_tool('tools/test.py', options[0], checkpoint,
                          '--work-dir', str(tmp_path / 'w'), *options[1:],
                          expect_ok=False)
        assert result.returncode == 2, result.stderr[-2000:]
        assert message in result.stderr.strip().splitlines()[-1]
        assert 'System environment' not in result.stdout
    assert not (tmp_path / 'p.json').exists()


def test_train_tool_dataloader_flags(quickstart, tmp_path):
    config = tmp_path / 'workers.py'
    config.write_text(
        f"_base_ = ['{quickstart['configs']['linear-probe']}']\n"
        'train_dataloader = dict(num_workers=1, pin_memory=True)\n'
        'val_dataloader = dict(num_workers=1, pin_memory=True)\n'
        'test_dataloader = val_dataloader\n'
        'train_cfg = dict(max_epochs=1, val_interval=1)\n')
    run_tool('tools/train.py', str(config), '--work-dir', str(tmp_path / 'w'),
             '--no-pin-memory', '--no-persistent-workers')
    dumped = Config.fromfile(str(tmp_path / 'w' / 'workers.py'))
    for field in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        assert dumped[field].pin_memory is False
        assert dumped[field].persistent_workers is False
    assert (tmp_path / 'w' / 'epoch_1.pth').exists()


def test_reparam_prints_results_only(trained, tmp_path):
    config = trained['configs']['repadapter']
    checkpoint = str(trained['work_dir'] / 'epoch_2.pth')
    log_file = tmp_path / 'reparam.log'
    result = run_tool('tools/reparam.py', config, checkpoint,
                      str(tmp_path / 'merged.pth'), '--verify', '--log-file',
                      str(log_file))
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 3, result.stdout
    assert lines[0].startswith('merged 8 adapters')
    assert lines[1].startswith('verified')
    assert lines[2] == f'log: {log_file}'
    log = log_file.read_text()
    # One init record per parameter of the stock ViT went to the log.
    vit = build_model(Config(dict(
        default_scope='mmpretrain',
        model=Config.fromfile(config).model.backbone.backbone)))
    assert log.count(' - torch.Size([') >= len(list(vit.parameters()))
    assert 'PretrainedInit' in log
    assert 'torch.Size' not in result.stdout + result.stderr


@pytest.mark.parametrize('script,args,expected', [
    ('dist_train.sh', ['cfg.py', '2', '--amp'],
     ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
      '--master_addr=127.0.0.1', '--nproc_per_node=2', '--master_port=29500',
      '{tools}/train.py', 'cfg.py', '--launcher', 'pytorch', '--amp']),
    ('dist_test.sh', ['cfg.py', 'ckpt.pth', '2', '--tta'],
     ['-m', 'torch.distributed.run', '--nnodes=1', '--node_rank=0',
      '--master_addr=127.0.0.1', '--nproc_per_node=2', '--master_port=29500',
      '{tools}/test.py', 'cfg.py', 'ckpt.pth', '--launcher', 'pytorch',
      '--tta']),
])
def test_dist_scripts_use_the_project_interpreter(tmp_path, script, args,
                                                  expected):
    """$PYTHON, else <repo>/.venv/bin/python when it exists, else python on
    PATH."""
    repo = tmp_path / 'repo'
    shutil.copytree(osp.join(ROOT, 'tools'), repo / 'tools',
                    ignore=shutil.ignore_patterns('__pycache__'))
    record = tmp_path / 'args.txt'
    recorder = f'#!/bin/sh\necho "$0" > {record}\nfor a in "$@"; do ' \
               f'echo "$a" >> {record}; done\n'
    path_bin = tmp_path / 'bin'
    for exe in (repo / '.venv' / 'bin' / 'python', path_bin / 'python',
                tmp_path / 'mine'):
        exe.parent.mkdir(parents=True, exist_ok=True)
        exe.write_text(recorder)
        exe.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHON'}
    env['PATH'] = f'{path_bin}:{env["PATH"]}'
    expected = [a.format(tools=repo / 'tools') for a in expected]

    def called(env):
        subprocess.run(['bash', str(repo / 'tools' / script), *args],
                       env=env, check=True, cwd=tmp_path)
        return record.read_text().splitlines()

    assert called(env) == [str(repo / '.venv' / 'bin' / 'python'), *expected]
    assert called(dict(env, PYTHON=str(tmp_path / 'mine'))) == [
        str(tmp_path / 'mine'), *expected]
    shutil.rmtree(repo / '.venv')
    assert called(env) == [str(path_bin / 'python'), *expected]


@pytest.mark.parametrize('script,args,tool,tool_args', [
    ('slurm_train.sh', ['part', 'job', 'cfg.py', 'work', '--amp'], 'train.py',
     ['cfg.py', '--work-dir=work', '--launcher=slurm', '--amp']),
    ('slurm_test.sh', ['part', 'job', 'cfg.py', 'ckpt.pth', '--tta'],
     'test.py', ['cfg.py', 'ckpt.pth', '--launcher=slurm', '--tta']),
])
def test_slurm_scripts_arguments(tmp_path, script, args, tool, tool_args):
    """mmpretrain's arguments and environment variables; srun runs the tool
    with the project's interpreter (no slurm here: srun records its
    arguments)."""
    repo = tmp_path / 'repo'
    shutil.copytree(osp.join(ROOT, 'tools'), repo / 'tools',
                    ignore=shutil.ignore_patterns('__pycache__'))
    venv_python = repo / '.venv' / 'bin' / 'python'
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text('#!/bin/sh\n')
    venv_python.chmod(0o755)
    record = tmp_path / 'srun.txt'
    srun = tmp_path / 'bin' / 'srun'
    srun.parent.mkdir()
    srun.write_text(f'#!/bin/sh\nfor a in "$@"; do echo "$a" >> {record}; '
                    'done\n')
    srun.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHON'}
    env.update(PATH=f'{srun.parent}:{env["PATH"]}', GPUS='4',
               GPUS_PER_NODE='2', SRUN_ARGS='--quotatype=auto')
    subprocess.run(['bash', str(repo / 'tools' / script), *args], env=env,
                   check=True, capture_output=True)
    assert record.read_text().splitlines() == [
        '-p', 'part', '--job-name=job', '--gres=gpu:2', '--ntasks=4',
        '--ntasks-per-node=2', '--cpus-per-task=5', '--kill-on-bad-exit=1',
        '--quotatype=auto', str(venv_python), '-u',
        str(repo / 'tools' / tool), *tool_args
    ]
