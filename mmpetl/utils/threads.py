# Copyright (c) mmpetl contributors. All rights reserved.
"""Thread and dataloader-worker counts that do not oversubscribe the CPUs.

PyTorch starts one OpenMP thread per core in every process, whatever else
runs: a training process with 2 dataloader workers on 2 cores keeps 4
threads busy, and OpenMP threads that lose their core spin until it comes
back (on a shared 2-core machine an iteration of the demo's tiny ViT took
3-7 s that way, 1 s with one thread and no workers). The tools therefore
set, before the Runner is built (:func:`set_thread_defaults`):

* **dataloader workers**: the config's ``num_workers`` (override it as any
  key: ``--cfg-options train_dataloader.num_workers=0``), or for every
  dataloader ``MMPETL_NUM_WORKERS`` when set;
* **PyTorch threads**: ``MMPETL_NUM_THREADS``, else ``OMP_NUM_THREADS``,
  else this process's share of the CPUs (the CPUs it may run on, divided
  by the processes of a ``torchrun`` node, ``LOCAL_WORLD_SIZE``) less the
  training dataloader's workers, at least 1.

The counts depend on the CPUs, not on the machine's load, so that a run
repeats on the same machine; how far the thread count moves a result is
measured on the reproducibility page (docs/en/reproducibility.md).
"""
import os
from typing import Optional, Sequence

import torch

from .errors import InputError

THREADS_ENV = 'MMPETL_NUM_THREADS'
WORKERS_ENV = 'MMPETL_NUM_WORKERS'
DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class ThreadCountError(InputError, ValueError):
    """A thread or worker count variable that is not a count."""


def env_count(name: str, minimum: int = 1) -> Optional[int]:
    """The integer in environment variable ``name`` (None when unset or
    empty); one line naming it when it is not an integer >= ``minimum``."""
    text = os.environ.get(name, '').strip()
    if not text:
        return None
    try:
        value = int(text)
    except ValueError:
        value = None
    if value is None or value < minimum:
        raise ThreadCountError(f'{name}={text!r}: expected an integer >= '
                               f'{minimum}; unset it for the default')
    return value


def cpu_share() -> int:
    """The CPUs this process may use over the processes of its node
    (``LOCAL_WORLD_SIZE``, set by ``torchrun``), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    local = env_count('LOCAL_WORLD_SIZE') or 1
    return max(1, cpus // local)


def default_num_threads(workers: int = 0) -> int:
    """PyTorch's thread count (see the module docstring) for a process
    that also runs ``workers`` dataloader workers."""
    return (env_count(THREADS_ENV) or env_count('OMP_NUM_THREADS')
            or max(1, cpu_share() - workers))


def set_thread_defaults(cfg=None,
                        fields: Sequence[str] = DATALOADERS) -> int:
    """Apply ``MMPETL_NUM_WORKERS`` to the dataloaders ``fields`` of
    ``cfg`` (a :class:`mmengine.config.Config`, optional; a dataloader
    left without workers loses ``persistent_workers``, which torch
    rejects there), then set PyTorch's thread count. Returns it."""
    workers = env_count(WORKERS_ENV, minimum=0)
    train_workers = 0
    for field in fields if cfg is not None else ():
        loader = cfg.get(field)
        if loader is None:
            continue
        if workers is not None:
            loader.num_workers = workers
        if not loader.get('num_workers', 0):
            loader.persistent_workers = False
        if field == 'train_dataloader':
            train_workers = loader.get('num_workers', 0)
    threads = default_num_threads(train_workers)
    torch.set_num_threads(threads)
    return threads
