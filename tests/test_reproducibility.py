# Copyright (c) mmpetl contributors. All rights reserved.
"""Thread and worker defaults that repeat (mmpetl.utils.threads), configs
named on the command line (mmpetl.apis.config_names), and trainings that
repeat bit for bit at the demo's documented setting."""
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

from mmpetl.apis import config_names
from mmpetl.apis.config_names import ConfigNameError, find_config
from mmpetl.datasets import write_digits_task
from mmpetl.utils import threads
from mmpetl.utils.threads import ThreadCountError, set_thread_defaults
from tests.support.tools import QUICKSTART, ROOT, one_error_line, run_tool

PRETRAIN = 'vit-tiny_digits0-4_pretrain'


@pytest.fixture
def thread_env(monkeypatch):
    for name in ('MMPETL_NUM_THREADS', 'MMPETL_NUM_WORKERS',
                 'OMP_NUM_THREADS', 'LOCAL_WORLD_SIZE'):
        monkeypatch.delenv(name, raising=False)
    before = torch.get_num_threads()
    yield monkeypatch
    torch.set_num_threads(before)


def loaders(workers):
    return Config(dict(
        train_dataloader=dict(num_workers=workers, persistent_workers=True),
        test_dataloader=dict(num_workers=workers, persistent_workers=True)))


def test_thread_defaults_leave_a_core_per_worker(thread_env):
    monkeypatch = thread_env
    monkeypatch.setattr(threads.os, 'sched_getaffinity',
                        lambda pid: set(range(8)), raising=False)
    # 8 CPUs, 2 training workers: 6 threads; torchrun's 2 processes: 2.
    assert set_thread_defaults(loaders(2)) == 6 == torch.get_num_threads()
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '2')
    assert set_thread_defaults(loaders(2)) == 2
    assert set_thread_defaults(loaders(5)) == 1
    # The variables win, MMPETL_NUM_THREADS over OMP_NUM_THREADS.
    monkeypatch.setenv('OMP_NUM_THREADS', '3')
    assert set_thread_defaults(loaders(2)) == 3
    monkeypatch.setenv('MMPETL_NUM_THREADS', '1')
    assert set_thread_defaults(loaders(2)) == 1 == torch.get_num_threads()
    # MMPETL_NUM_WORKERS sets every dataloader; without workers nothing
    # persists (torch refuses persistent_workers there).
    monkeypatch.setenv('MMPETL_NUM_WORKERS', '0')
    cfg = loaders(4)
    set_thread_defaults(cfg)
    for name in ('train_dataloader', 'test_dataloader'):
        assert cfg[name].num_workers == 0
        assert cfg[name].persistent_workers is False
    monkeypatch.delenv('MMPETL_NUM_THREADS')
    for name, value in (('MMPETL_NUM_WORKERS', '-1'),
                        ('MMPETL_NUM_THREADS', '0'),
                        ('OMP_NUM_THREADS', 'two')):
        monkeypatch.setenv(name, value)
        with pytest.raises(ThreadCountError, match=f'^{name}='):
            set_thread_defaults(loaders(2))
        monkeypatch.delenv(name)


def test_configs_by_name_as_mim_names_them(tmp_path, monkeypatch):
    shipped = osp.join(QUICKSTART, f'{PRETRAIN}.py')
    for name in (f'mmpetl::quickstart/{PRETRAIN}.py', f'{PRETRAIN}.py',
                 PRETRAIN, f'quickstart/{PRETRAIN}.py'):
        assert osp.samefile(find_config(name), shipped), name
    # Other toolboxes' configs as their _base_ names them.
    assert find_config('mmpretrain::_base_/default_runtime.py').endswith(
        osp.join('configs', '_base_', 'default_runtime.py'))
    # A file of the user's wins over a shipped name.
    monkeypatch.chdir(tmp_path)
    (tmp_path / f'{PRETRAIN}.py').write_text('x = 1\n')
    assert find_config(f'{PRETRAIN}.py') == f'{PRETRAIN}.py'
    with pytest.raises(ConfigNameError,
                       match='did you mean vit-tiny_digits5-9_lora.py'):
        find_config('vit-tiny_digits5-9_lorra')
    with pytest.raises(ConfigNameError, match='mmpetl::nope.py'):
        find_config('mmpetl::nope.py')
    # A tool: one line, exit 2, before anything is read or written.
    error = one_error_line(run_tool(
        osp.join(ROOT, 'tools', 'reparam.py'), 'vit-tiny_digits5-9_lorra',
        str(tmp_path / 'in.pth'), str(tmp_path / 'out.pth'),
        expect_ok=False))
    assert 'did you mean vit-tiny_digits5-9_lora.py' in error
    # Two shipped configs of one name: say which, refuse to guess.
    for folder in ('a', 'b'):
        (tmp_path / 'configs' / folder).mkdir(parents=True)
        (tmp_path / 'configs' / folder / 'same.py').write_text('x = 1\n')
    monkeypatch.setattr(config_names, 'config_dir',
                        lambda: str(tmp_path / 'configs'))
    with pytest.raises(ConfigNameError, match='a/same.py, b/same.py'):
        find_config('same')


def train_tiny(tmp_path, work_dir, config, cpus, via_module=False):
    """The demo's pre-training at tiny size (32 images, 4 epochs) at the
    demo's setting, on the CPUs ``cpus``; returns the final state dict."""
    env = {k: v for k, v in os.environ.items() if k != 'OMP_NUM_THREADS'}
    env.update(MMPETL_NUM_THREADS='1', MMPETL_NUM_WORKERS='0',
               PYTHONPATH=ROOT)
    tool = ['-m', 'mmpetl', 'train'] if via_module else [
        osp.join(ROOT, 'tools', 'train.py')]
    command = [
        sys.executable, *tool, config, '--work-dir', str(work_dir),
        '--no-validate', '--cfg-options', 'train_cfg.max_epochs=4',
        'train_dataloader.batch_size=16', 'train_dataloader.dataset.indices=32'
    ]
    result = subprocess.run(command, cwd=tmp_path, env=env,
                            capture_output=True, text=True,
                            preexec_fn=lambda: os.sched_setaffinity(0, cpus))
    assert result.returncode == 0, \
        result.stdout[-3000:] + result.stderr[-3000:]
    return torch.load(work_dir / 'epoch_4.pth', map_location='cpu',
                      weights_only=False)['state_dict']


@pytest.mark.skipif(not hasattr(os, 'sched_setaffinity')
                    or len(os.sched_getaffinity(0)) < 2,
                    reason='needs two CPUs to pin runs to')
def test_training_repeats_bit_for_bit_on_one_or_two_cpus(tmp_path):
    """Two trainings, one on two CPUs named by ``mmpetl::``, one on one CPU
    named as mim would: at the documented setting (one thread, no
    workers), the same checkpoint to the bit. PyTorch's own default (a
    thread per CPU) changes the sums' order, and the weights, with the
    number of CPUs."""
    write_digits_task(str(tmp_path / 'data' / 'quickstart' / 'digits0-4'),
                      (0, 1, 2, 3, 4))
    two = sorted(os.sched_getaffinity(0))[:2]
    first = train_tiny(tmp_path, tmp_path / 'two_cpus',
                       f'mmpetl::quickstart/{PRETRAIN}.py', set(two),
                       via_module=True)
    second = train_tiny(tmp_path, tmp_path / 'one_cpu', PRETRAIN, {two[0]})
    assert first.keys() == second.keys()
    different = [k for k in first if not torch.equal(first[k], second[k])]
    assert not different
