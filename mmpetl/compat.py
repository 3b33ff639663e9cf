# Copyright (c) mmpetl contributors. All rights reserved.
"""Fixes that let the pinned OpenMMLab 2.x stack run on today's torch.

Every fix here is small, applied once by :func:`apply_all` when ``mmpetl`` is
imported, and covered by a test that fails without it:

* **torch.load weights_only** (torch >= 2.6): mmengine 0.10.7 loads local
  checkpoints with ``torch.load(path)``, which now defaults to
  ``weights_only=True`` and rejects mmengine's own checkpoints (their meta
  holds a ``HistoryBuffer``), so ``--resume`` and ``load_from`` fail. We
  register :func:`mmpetl.checkpoint_io.load_local_checkpoint` as the local
  loader: still ``weights_only=True``, with an allow-list of the types
  mmengine's checkpoints hold (never ``weights_only=False`` unless
  ``MMPETL_TRUSTED_CHECKPOINTS=1``).
* **mmaction2 1.2.0 wheel lacks** ``mmaction/models/localizers/drn``, so
  ``import mmaction.models`` fails. We provide that module; building a
  ``DRN`` raises an error that says why.
* **Distributed training without a GPU**: mmengine's ``init_dist`` calls
  ``torch.cuda.set_device`` unconditionally and wraps DDP with
  ``device_ids=[LOCAL_RANK]``, which CPU modules reject.
  :func:`init_cpu_distributed` starts a gloo process group first (mmengine
  then skips its own) and removes the device ids; :func:`cpu_distributed`
  also tears the group down after the run.

The ``pkg_resources`` removal in setuptools 82 (used by mmcv's build and by
mmengine's ``_base_ = 'pkg::...'`` resolution) is handled by the
``setuptools<82`` pin in ``setup.py``.
"""
import importlib.util
import os
import os.path as osp
import sys
import types
from contextlib import contextmanager
from typing import Iterator

import torch
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint_io import load_local_checkpoint


def patch_checkpoint_loader() -> None:
    CheckpointLoader.register_scheme(
        prefixes='', loader=load_local_checkpoint, force=True)


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
    package.__doc__ = 'Provided by mmpetl.compat: missing from the wheel.'
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
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel',
        broadcast_buffers=False,
        find_unused_parameters=cfg.get('find_unused_parameters', False))
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    return True


@contextmanager
def cpu_distributed(cfg, launcher: str) -> Iterator[None]:
    """:func:`init_cpu_distributed` around a run, and after a run that
    ended normally, a barrier and ``destroy_process_group``.

    A gloo group left alive at interpreter exit can abort a rank ("terminate
    called without an active exception") when its peer closed first, failing
    a run that trained fine. After an exception nothing waits on the peers:
    the launcher stops them.
    """
    started = init_cpu_distributed(cfg, launcher)
    yield
    if started:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()


def apply_all() -> None:
    patch_checkpoint_loader()
    provide_missing_mmaction_drn()
