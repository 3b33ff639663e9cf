# Copyright (c) mmpetl contributors. All rights reserved.
import importlib.util
import os.path as osp
import subprocess
import sys

import pickle

import pytest
import torch
from mmengine.logging import HistoryBuffer
from mmengine.runner import checkpoint as mmengine_checkpoint

from mmpetl import compat


def _runner_like_checkpoint(path):
    # What mmengine's Runner writes: tensors plus Python objects in meta.
    torch.save(
        dict(
            meta=dict(epoch=1),
            state_dict=dict(w=torch.ones(2)),
            message_hub=dict(log_scalars=dict(loss=HistoryBuffer()))), path)


def test_stock_mmengine_loader_fails_on_its_own_checkpoints(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    _runner_like_checkpoint(path)
    with pytest.raises(pickle.UnpicklingError, match='weights_only'):
        mmengine_checkpoint.load_from_local(path, map_location='cpu')


def test_patched_loader_loads_them_through_mmengine(tmp_path):
    path = str(tmp_path / 'epoch_1.pth')
    _runner_like_checkpoint(path)
    # mmengine's own entry point, as used by Runner.resume and load_from.
    loaded = mmengine_checkpoint._load_checkpoint(path, map_location='cpu')
    assert isinstance(loaded['message_hub']['log_scalars']['loss'],
                      HistoryBuffer)
    assert torch.equal(loaded['state_dict']['w'], torch.ones(2))


def test_mmaction_imports_with_the_missing_drn_module():
    spec = importlib.util.find_spec('mmaction')
    drn_dir = osp.join(osp.dirname(spec.origin), 'models', 'localizers', 'drn')
    if osp.isdir(drn_dir):
        pytest.skip('this mmaction2 ships DRN')
    # Without the fix, a fresh interpreter cannot import mmaction.models.
    plain = subprocess.run(
        [sys.executable, '-c', 'import mmaction.models'],
        capture_output=True, text=True)
    assert plain.returncode != 0 and 'drn' in plain.stderr
    import mmaction.models  # noqa: F401  (mmpetl was imported by conftest)
    from mmaction.registry import MODELS
    with pytest.raises(ImportError, match='DRN is missing'):
        MODELS.build(dict(type='DRN'))


def test_cpu_distributed_is_left_to_mmengine_with_cuda_or_no_launcher():
    from mmengine.config import Config
    cfg = Config(dict())
    assert compat.init_cpu_distributed(cfg, 'none') is False
    assert 'model_wrapper_cfg' not in cfg


def test_cpu_distributed_starts_and_tears_down_a_gloo_group(monkeypatch):
    import socket

    import torch.distributed as dist
    from mmengine.config import Config
    if torch.cuda.is_available():
        pytest.skip('with CUDA, mmengine starts the process group itself')
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        port = probe.getsockname()[1]
    for key, value in dict(RANK='0', WORLD_SIZE='1', MASTER_ADDR='127.0.0.1',
                           MASTER_PORT=str(port)).items():
        monkeypatch.setenv(key, value)
    cfg = Config(dict())
    with compat.cpu_distributed(cfg, 'pytorch'):
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
        assert cfg.model_wrapper_cfg.device_ids is None
    assert not dist.is_initialized()
