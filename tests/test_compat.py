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

from mmpetl.utils import compat


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
        MODELS.build(dict(type='mmaction.DRN'))  # whatever the default scope


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


USER_CONFIG = """
_base_ = 'mmpetl::quickstart/vit-tiny_digits5-9_repadapter.py'
model = dict(
    backbone=dict(backbone=dict(init_cfg=None)), head=dict(num_classes=3))
"""


def test_mmpetl_config_bases_resolve_once_mmpetl_is_imported(tmp_path):
    from mmengine.config import Config

    from mmpetl.models import AdaptedLinear
    from mmpetl.apis.reparam import build_model
    (tmp_path / 'my_config.py').write_text(USER_CONFIG)
    # Without the fix: a fresh interpreter that has not imported mmpetl,
    # with the install's start-up hook (mmpetl_bases.pth, tested in
    # test_packaging) taken out, as under an install that lacks it.
    plain = subprocess.run(
        [sys.executable, '-c',
         'import sys; sys.meta_path[:] = [f for f in sys.meta_path '
         "if getattr(f, '__name__', None) != '_MMPetlBasesHook']; "
         "from mmengine.config import Config; Config.fromfile('my_config.py')"],
        cwd=tmp_path, capture_output=True, text=True)
    assert plain.returncode != 0
    assert 'does not support to load mmpetl config' in plain.stderr
    # With it (conftest imported mmpetl).
    cfg = Config.fromfile(str(tmp_path / 'my_config.py'))
    assert cfg.model.backbone.type == 'mmpetl.RepAdapterBackbone'
    assert cfg.default_scope == 'mmpretrain'
    # Read in the toolbox's scope: with mmengine's `_scope_='mmpetl'`,
    # ImageClassifier would not be found.
    assert '_scope_' not in cfg.model
    model = build_model(cfg)
    assert sum(isinstance(m, AdaptedLinear) for m in model.modules()) == 8
    assert model(torch.randn(2, 3, 32, 32), mode='tensor').shape == (2, 3)


def test_unknown_mmpetl_config_is_one_clear_error(tmp_path):
    from mmengine.config import Config
    (tmp_path / 'bad.py').write_text("_base_ = 'mmpetl::nowhere/x.py'\n")
    with pytest.raises(FileNotFoundError,
                       match='mmpetl::nowhere/x.py .* is not an mmpetl '
                       'config'):
        Config.fromfile(str(tmp_path / 'bad.py'))


def test_config_dir_prefers_the_package_links(tmp_path, monkeypatch):
    checkout = tmp_path / 'checkout'
    (checkout / 'configs').mkdir(parents=True)
    (checkout / 'mmpetl' / 'utils').mkdir(parents=True)
    fake = str(checkout / 'mmpetl' / 'utils' / 'compat.py')
    monkeypatch.setattr(compat, '__file__', fake)
    assert compat.config_dir() == str(checkout / 'configs')
    (checkout / 'mmpetl' / '.mim' / 'configs').mkdir(parents=True)
    assert compat.config_dir() == str(checkout / 'mmpetl' / '.mim' /
                                      'configs')


def test_pkg_resources_warning_is_silenced_for_toolbox_bases(tmp_path):
    # mmengine imports pkg_resources to resolve `pkg::` bases; under the
    # setuptools<82 pin that prints a deprecation warning per tool run.
    config = tmp_path / 'user.py'
    config.write_text("_base_ = 'mmpretrain::_base_/default_runtime.py'\n")
    code = ('import mmpetl; from mmengine.config import Config; '
            f'cfg = Config.fromfile({str(config)!r}); print(cfg.default_scope)')
    result = subprocess.run([sys.executable, '-c', code], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == 'mmpretrain'
    assert 'pkg_resources is deprecated' not in result.stderr
