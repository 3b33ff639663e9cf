# Copyright (c) mmpetl contributors. All rights reserved.
"""Fixes that let the pinned OpenMMLab 2.x stack run on today's torch.

Every fix here is small, applied once by :func:`apply_all` when ``mmpetl`` is
imported, and covered by a test that fails without it:

* **torch.load weights_only**, **runner checkpoints written in place**
  and **configs in checkpoints run as code** are fixed by the file IO layer
  above this one (:mod:`mmpetl.fileio.safe_load`,
  :mod:`mmpetl.fileio.outputs`, :mod:`mmpetl.fileio.configs`), which
  ``import mmpetl`` applies after these fixes.
* **mmaction2 1.2.0 wheel lacks** ``mmaction/models/localizers/drn``, so
  ``import mmaction.models`` fails. We provide that module; building a
  ``DRN`` raises an error that says why.
* **Distributed training without a GPU**: mmengine's ``init_dist`` calls
  ``torch.cuda.set_device`` unconditionally and wraps DDP with
  ``device_ids=[LOCAL_RANK]``, which CPU modules reject.
  :func:`init_cpu_distributed` starts a gloo process group first (mmengine
  then skips its own) and removes the device ids (of the model wrapper
  :func:`mmpetl.engine.distributed.set_model_wrapper` sets);
  :func:`cpu_distributed` also tears the group down after the run.
* **FSDP without a GPU**: mmengine's ``FSDPStrategy`` wraps the model with
  ``device_id=int(LOCAL_RANK)``, which FSDP takes for a CUDA device.
  :func:`fsdp_on_cpu` gives its model wrapper ``device_id=cpu`` when no GPU
  is available (a ``device_id`` in the config still wins), so that
  ``runner_type='FlexibleRunner'`` with ``strategy=dict(type='FSDPStrategy')``
  trains over gloo (:func:`init_cpu_distributed` starts the group first).
* **FSDP resume**: mmengine's ``FSDPStrategy.load_optim_state_dict`` calls
  ``FSDP.optim_state_dict_to_load(state_dict, model, optimizer)``, the
  argument order of torch < 2.1 (today's is ``model, optim,
  optim_state_dict``): resuming fails with "unhashable type: 'dict'".
  :func:`fsdp_resume` passes them by name.
* **``_base_ = 'mmpetl::...'``**: mmengine resolves ``pkg::`` config paths
  only for packages in its own table (``MODULE2PACKAGE``; otherwise
  ``AssertionError: mmengine does not support to load mmpetl config``), and
  finds them through the distribution's location, which for an editable
  install (``pip install -e .``) is site-packages, where no ``mmpetl/``
  lies. :func:`register_config_package` adds mmpetl to the table and reads
  ``mmpetl::X`` from the *imported* mmpetl package: ``mmpetl/.mim/configs/X``
  (the wheel's copies, the editable install's links; ``setup.py``), or in a
  source checkout without them, the checkout's ``configs/X``. mmengine
  would also give every dict of such a base the package's scope
  (``_scope_='mmpetl'``), which suits a toolbox whose registry holds every
  type of its configs; mmpetl's configs are written for the scope of the
  toolbox they extend (their ``default_scope``) and name their own types
  ``mmpetl.<Name>``, so they are read without one, as a local base is.
  Programs that read their config before importing anything (the
  toolboxes' own ``tools/train.py``: ``custom_imports`` are processed after
  the bases) get this through the wheel's start-up hook
  (``mmpetl_bases.pth`` and ``_mmpetl_bases.py``), which imports mmpetl
  when the first ``mmpetl::`` base is read.

The ``pkg_resources`` removal in setuptools 82 (used by mmcv's build and by
mmengine's ``_base_ = 'pkg::...'`` resolution) is handled by the
``setuptools<82`` pin in ``setup.py``; the deprecation warning that
setuptools 81 prints on each such import (two lines per tool run, about
the pin itself) is silenced by :func:`silence_pkg_resources_warning`.
"""
import importlib.util
import os
import os.path as osp
import sys
import types
import warnings
from contextlib import contextmanager
from typing import Iterator

import torch


_DRN_MODULE = 'mmaction.models.localizers.drn'


class MissingDRN:
    """Stand-in for mmaction2's DRN, which its 1.2.0 wheel does not ship."""

    def __init__(self, *args, **kwargs):
        raise ImportError(
            'DRN is missing from the mmaction2 1.2.0 wheel (the package '
            f'{_DRN_MODULE} is not shipped); install mmaction2 from source '
            'to use it')


def provide_missing_mmaction_drn() -> bool:
    """Provide ``mmaction.models.localizers.drn`` if the installed mmaction2
    lacks it. Returns whether a stand-in was installed."""
    spec = importlib.util.find_spec('mmaction')
    if spec is None or _DRN_MODULE in sys.modules:
        return False
    package_dir = osp.join(
        osp.dirname(spec.origin), 'models', 'localizers', 'drn')
    if osp.isdir(package_dir):
        return False
    package = types.ModuleType(_DRN_MODULE)
    package.__path__ = []
    package.__doc__ = ('Provided by mmpetl.utils.compat: missing from the '
                       'wheel.')
    drn = types.ModuleType(f'{_DRN_MODULE}.drn')
    drn.DRN = MissingDRN
    package.drn = drn
    sys.modules[_DRN_MODULE] = package
    sys.modules[f'{_DRN_MODULE}.drn'] = drn
    # Registered so that a config naming DRN gets the error above, not
    # "DRN is not in the registry".
    from mmaction.registry import MODELS
    MODELS.register_module('DRN', module=MissingDRN, force=True)
    return True


def init_cpu_distributed(cfg, launcher: str) -> bool:
    """Start a gloo process group for ``launcher='pytorch'`` without a GPU.

    Call before building the Runner. Returns whether it did anything (it
    does nothing with CUDA, where mmengine's own ``init_dist`` works).
    """
    if launcher != 'pytorch' or torch.cuda.is_available():
        return False
    import torch.distributed as dist
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']))
    from mmpetl.engine.distributed import set_model_wrapper
    set_model_wrapper(cfg)
    cfg.model_wrapper_cfg['device_ids'] = None
    return True


@contextmanager
def cpu_distributed(cfg, launcher: str) -> Iterator[None]:
    """:func:`init_cpu_distributed` around a run, and after a run that
    ended normally, a barrier and ``destroy_process_group``.

    A gloo group left alive at interpreter exit can abort a rank ("terminate
    called without an active exception") when its peer closed first, failing
    a run that trained fine. After an exception nothing waits on the peers:
    the launcher stops them. A group started before (by a program running
    several trainings in one launch) is left to it.
    """
    import torch.distributed as dist
    ours = not dist.is_initialized()
    started = init_cpu_distributed(cfg, launcher)
    yield
    if started and ours:
        dist.barrier()
        dist.destroy_process_group()


def fsdp_on_cpu() -> None:
    """Let mmengine's ``FSDPStrategy`` wrap the model on CPU (see
    above)."""
    from mmengine._strategy import FSDPStrategy
    wrap_model = FSDPStrategy._wrap_model
    if getattr(wrap_model, 'runs_on_cpu', False):
        return

    def _wrap_model(self, model):
        if not torch.cuda.is_available():
            self.model_wrapper = dict(
                self.model_wrapper or dict(type='MMFullyShardedDataParallel'))
            self.model_wrapper.setdefault('device_id', torch.device('cpu'))
        return wrap_model(self, model)

    _wrap_model.runs_on_cpu = True
    FSDPStrategy._wrap_model = _wrap_model


def fsdp_resume() -> None:
    """Let mmengine's ``FSDPStrategy`` resume its optimizer (see
    above)."""
    from mmengine._strategy import FSDPStrategy
    if getattr(FSDPStrategy.load_optim_state_dict, 'by_name', False):
        return
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    def load_optim_state_dict(self, state_dict: dict) -> None:
        self.optim_wrapper.load_state_dict(FSDP.optim_state_dict_to_load(
            model=self.model, optim=self.optim_wrapper.optimizer,
            optim_state_dict=state_dict))

    load_optim_state_dict.by_name = True
    FSDPStrategy.load_optim_state_dict = load_optim_state_dict


PACKAGE_PREFIX = 'mmpetl::'


def config_dir() -> str:
    """Where ``mmpetl::`` config paths point: ``mmpetl/.mim/configs`` of
    this mmpetl package, else (a source checkout without the links of
    ``pip install -e .``) the checkout's ``configs``."""
    package = osp.dirname(osp.dirname(osp.abspath(__file__)))
    installed = osp.join(package, '.mim', 'configs')
    checkout = osp.join(osp.dirname(package), 'configs')
    return installed if osp.isdir(installed) or not osp.isdir(checkout) \
        else checkout


def register_config_package() -> None:
    """Let mmengine resolve ``_base_ = 'mmpetl::...'`` (see above)."""
    from mmengine.config import Config
    from mmengine.config.utils import MODULE2PACKAGE
    MODULE2PACKAGE.setdefault('mmpetl', 'mmpetl')
    if getattr(Config._get_cfg_path, 'resolves_mmpetl', False):
        return
    get_cfg_path = Config._get_cfg_path

    def _get_cfg_path(cfg_path: str, filename: str):
        if not cfg_path.startswith(PACKAGE_PREFIX):
            return get_cfg_path(cfg_path, filename)
        path = osp.join(config_dir(), cfg_path[len(PACKAGE_PREFIX):])
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{cfg_path} (in {filename}) is not an mmpetl config: '
                f'{path} does not exist')
        return path, None

    _get_cfg_path.resolves_mmpetl = True
    Config._get_cfg_path = staticmethod(_get_cfg_path)


def silence_pkg_resources_warning() -> None:
    """Ignore setuptools' "pkg_resources is deprecated" warning, which
    mmengine's ``pkg::`` config resolution triggers under our pin."""
    warnings.filterwarnings(
        'ignore', message='pkg_resources is deprecated', category=UserWarning)


def apply_all() -> None:
    """Apply every fix of this module (``import mmpetl`` calls it once)."""
    silence_pkg_resources_warning()
    provide_missing_mmaction_drn()
    register_config_package()
    fsdp_on_cpu()
    fsdp_resume()
