# Copyright (c) mmpetl contributors. All rights reserved.
"""Exact resume: random states and the data position go into checkpoints.

mmengine 0.10 resumes weights, optimizer, schedulers and the epoch /
iteration counters, but neither the random number generators (dropout,
drop-path and random augmentation then draw other numbers than the
uninterrupted run) nor, in an epoch-based loop, the position inside an
epoch (a checkpoint saved mid-epoch restarts that epoch from its first
batch).
"""
import itertools
import random
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_rank, get_world_size
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop
from torch.utils.data import Sampler

from mmpetl.fileio.errors import CheckpointError
from mmpetl.registry import HOOKS

#: Checkpoint key of the resume state.
RESUME_KEY = 'mmpetl_resume'
#: The config fields that shape a training run: a resume with any of them
#: changed cannot repeat the interrupted run.
TRAINING_SETTINGS = ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper',
                     'param_scheduler', 'randomness', 'auto_scale_lr')


def training_settings(cfg) -> Dict[str, str]:
    """``{dotted key: repr of the value}`` of every leaf of the
    :data:`TRAINING_SETTINGS` of ``cfg`` (plain strings: they go into
    checkpoints)."""
    settings = {}

    def walk(prefix, value):
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f'{prefix}.{key}', item)
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                walk(f'{prefix}.{index}', item)
        else:
            settings[prefix] = repr(value)

    for field in TRAINING_SETTINGS:
        walk(field, cfg.get(field, None))
    return settings


def rng_state() -> Dict[str, Any]:
    """The Python, NumPy and torch (CPU and CUDA) random states."""
    state = dict(
        python=random.getstate(),
        numpy=np.random.get_state(),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Dict[str, Any]) -> None:
    """Restore what :func:`rng_state` returned (tensors may come back on a
    GPU: the runner resumes with ``map_location`` its device)."""
    random.setstate(state['python'])
    np.random.set_state(state['numpy'])
    torch.set_rng_state(state['torch'].cpu())
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


def check_resume_state(checkpoint: dict, source: str) -> None:
    """Raise :class:`~mmpetl.fileio.errors.CheckpointError` in one line
    unless the resume state of ``checkpoint`` (if any) is what
    :class:`ExactResumeHook` writes: counters that are whole numbers >= 0,
    and a non-empty list of random states each of which the Python, NumPy
    and torch generators accept (tried on throwaway generators)."""
    saved = checkpoint.get(RESUME_KEY)
    if saved is None:
        return

    def refuse(what):
        raise CheckpointError(f'checkpoint {source}: its resume state '
                              f'({RESUME_KEY}) {what}; resume from a '
                              'checkpoint that training wrote')

    if not isinstance(saved, dict):
        refuse(f'is a {type(saved).__name__}, not a dict')
    for key in ('iter', 'batches_in_epoch'):
        value = saved.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            refuse(f'has {key}={value!r:.40}, not a whole number >= 0')
    seed = saved.get('sampler_seed')
    if seed is not None and (isinstance(seed, bool)
                             or not isinstance(seed, int)):
        refuse(f'has sampler_seed={seed!r:.40}, not a whole number')
    states = saved.get('rng')
    if not isinstance(states, list) or not states:
        refuse(f'has rng={states!r:.40}, not a list of random states')
    for state in states:
        try:
            random.Random().setstate(state['python'])
            np.random.RandomState().set_state(state['numpy'])
            torch.Generator().set_state(state['torch'].cpu())
            for cuda in state.get('cuda', ()):
                if not (isinstance(cuda, torch.Tensor)
                        and cuda.dtype == torch.uint8):
                    raise TypeError('a CUDA state is not a byte tensor')
        except Exception as e:  # each generator raises its own types
            refuse(f'holds a random state that cannot be restored '
                   f'({type(e).__name__}: {str(e).splitlines()[0][:80]})')


class ResumeSampler(Sampler):
    """Wrap a sampler: drop its first ``skip`` indices, and call
    ``on_position`` once, just before yielding index number ``position``
    of this wrapper's life (counting the dropped ones), i.e. after the data
    loader started its epoch and before any sample of the resumed position
    is loaded."""

    def __init__(self, sampler: Sampler, skip: int, position: int,
                 on_position: Callable[[], None]):
        self.sampler = sampler
        self.skip = skip
        self.position = position
        self.on_position = on_position
        self.count = 0

    def __iter__(self) -> Iterator:
        indices = iter(self.sampler)
        if self.skip:  # the skipped indices are never loaded
            self.count += sum(1 for _ in itertools.islice(indices, self.skip))
        for index in indices:
            if self.count == self.position and self.on_position:
                self.on_position()
                self.on_position = None
            self.count += 1
            yield index

    def __len__(self) -> int:
        return max(len(self.sampler) - self.skip, 0)

    def __getattr__(self, name: str) -> Any:
        # set_epoch, seed, ... of the wrapped sampler.
        return getattr(self.__dict__['sampler'], name)


@HOOKS.register_module()
class ExactResumeHook(Hook):
    """Make ``--resume`` continue exactly as the uninterrupted run would.

    Every checkpoint gets ``checkpoint['mmpetl_resume']``: the iteration,
    the batches already done in the current epoch, the train sampler's
    seed, and the random states (Python, NumPy, torch CPU and CUDA) of
    every rank, gathered from all ranks before the checkpoint is written.
    On resume from such a checkpoint each rank gets its own states back
    and the data continues from the saved position:

    * at an epoch boundary, the states are restored before the first epoch
      starts (so the data loader's base seed, drawn when its iterator is
      made, is the same too);
    * mid-epoch in an epoch-based loop, the sampler skips the batches done
      (without loading them) and the states are restored just before the
      next batch is loaded;
    * in an iteration-based loop, mmengine replays the batches done through
      the data loader; the states are restored after that replay.

    Validation (and testing) during training leaves the random states as
    it found them: it draws from them (each data loader iteration draws a
    seed), and a resumed run, which does not repeat the validation that
    followed its checkpoint, would otherwise go on from other states.

    Weights after resume are then bit-identical to the uninterrupted run
    on CPU (on GPU, up to non-deterministic kernels), with dropout,
    drop-path and random augmentation on, with or without validation, on
    one or more processes. When it cannot be, the resumed run says why, in
    a warning: another setting that shapes training than the checkpoint's
    (each changed key named, e.g. ``optim_wrapper.optimizer.lr``: learning
    rate, ``train_cfg.max_epochs``, the model, the data), another number
    of processes (rank ``r`` is restored with the saved rank
    ``r % saved``), or data loader workers, which keep their own random
    states, on a mid-epoch resume or when they are persistent.

    ``tools/train.py`` adds this hook to every run.
    """

    priority = 'LOW'  # before CheckpointHook (VERY_LOW) writes a checkpoint

    def __init__(self) -> None:
        self._batches_in_epoch = 0
        self._states: Optional[List[Dict[str, Any]]] = None
        self._saved: Optional[Dict[str, Any]] = None
        self._gather_every_iter = False
        self._outside_training: Optional[Dict[str, Any]] = None

    # ------------------------------------------------------------ saving
    def before_train(self, runner) -> None:
        self._gather_every_iter = get_world_size() > 1 and any(
            isinstance(h, CheckpointHook) and not h.by_epoch
            for h in runner.hooks)
        self._resume(runner)

    def _capture(self) -> None:
        state = rng_state()
        self._states = all_gather_object(state) if get_world_size() > 1 \
            else [state]

    def before_val(self, runner) -> None:
        # Validation must not move the random states of training on.
        self._outside_training = rng_state()

    def after_val(self, runner) -> None:
        set_rng_state(self._outside_training)

    before_test = before_val
    after_test = after_val

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        self._batches_in_epoch += 1
        if self._gather_every_iter:
            self._capture()
        else:
            self._states = None

    def after_train_epoch(self, runner) -> None:
        if self._saved is not None:  # resumed at the end of an epoch
            self._restore(runner)
        self._batches_in_epoch = 0
        self._restore_sampler(runner)
        if get_world_size() > 1:
            self._capture()
        else:
            self._states = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        meta = checkpoint.get('meta') or {}
        sampler = self._train_sampler(runner)
        checkpoint[RESUME_KEY] = dict(
            iter=meta.get('iter', runner.iter),
            batches_in_epoch=self._batches_in_epoch,
            sampler_seed=getattr(sampler, 'seed', None),
            rng=self._states or [rng_state()],
            settings=training_settings(runner.cfg))

    # ---------------------------------------------------------- resuming
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        check_resume_state(checkpoint, runner.cfg.get('load_from') or
                           'resumed from')
        self._saved = checkpoint.get(RESUME_KEY)

    @staticmethod
    def _batch_sampler(runner):
        loader = runner.train_loop.dataloader
        batch_sampler = getattr(loader, 'batch_sampler', None)
        return batch_sampler if hasattr(batch_sampler, 'sampler') else None

    def _train_sampler(self, runner):
        batch_sampler = self._batch_sampler(runner)
        sampler = batch_sampler.sampler if batch_sampler else None
        return sampler.sampler if isinstance(sampler, ResumeSampler) \
            else sampler

    def _restore_sampler(self, runner) -> None:
        batch_sampler = self._batch_sampler(runner)
        if batch_sampler and isinstance(batch_sampler.sampler, ResumeSampler) \
                and isinstance(runner.train_loop, EpochBasedTrainLoop):
            batch_sampler.sampler = batch_sampler.sampler.sampler

    def _restore(self, runner) -> None:
        saved, self._saved = self._saved, None
        states = saved['rng']
        rank = get_rank()
        if len(states) != get_world_size() and rank == 0:
            print_log(
                f'ExactResumeHook: the checkpoint holds random states of '
                f'{len(states)} processes, this run has {get_world_size()}; '
                'the resumed run will not repeat the interrupted one',
                logger='current', level=30)
        set_rng_state(states[rank % len(states)])

    @staticmethod
    def _warn_if_not_exact(runner, saved: Dict[str, Any]) -> None:
        """Warn (rank 0) about every reason the resumed run cannot repeat the
        interrupted one, other than the number of processes (see
        :meth:`ExactResumeHook._restore`)."""
        if get_rank() != 0:
            return
        reasons = []
        before, now = saved.get('settings'), training_settings(runner.cfg)
        if before is not None:
            changed = sorted(k for k in set(before) | set(now)
                             if before.get(k) != now.get(k))
            reasons.extend(f'{k} is {now.get(k, "unset")}, was '
                           f'{before.get(k, "unset")}' for k in changed[:5])
            if len(changed) > 5:
                reasons.append(f'{len(changed) - 5} more settings changed')
        loader = runner.train_loop.dataloader
        workers = getattr(loader, 'num_workers', 0)
        if workers and saved.get('batches_in_epoch') and isinstance(
                runner.train_loop, EpochBasedTrainLoop):
            reasons.append(f'it resumes mid-epoch with {workers} data loader '
                           'workers, whose random states are not saved')
        elif workers and getattr(loader, 'persistent_workers', False):
            reasons.append(f'its {workers} persistent data loader workers '
                           'keep random states that are not saved')
        for reason in reasons:
            print_log(f'ExactResumeHook: the resumed run will not repeat the '
                      f'interrupted one: {reason}', logger='current', level=30)

    def _resume(self, runner) -> None:
        saved = self._saved
        if saved is None:
            return
        if saved.get('iter') != runner.iter:  # loaded, not resumed
            self._saved = None
            return
        self._warn_if_not_exact(runner, saved)
        sampler = self._train_sampler(runner)
        seed = saved.get('sampler_seed')
        if seed is not None and getattr(sampler, 'seed', None) != seed:
            sampler.seed = seed
            if hasattr(sampler, '_indices_of_rank'):  # InfiniteSampler
                sampler.indices = sampler._indices_of_rank()
        batch_sampler = self._batch_sampler(runner)
        batch_size = getattr(batch_sampler, 'batch_size', None)
        done = saved.get('batches_in_epoch', 0)
        if isinstance(runner.train_loop, EpochBasedTrainLoop):
            position = done
        else:  # mmengine replays the iterations done
            position, done = runner.iter, 0
        if not position or batch_sampler is None or batch_size is None:
            self._restore(runner)
            return
        self._batches_in_epoch = done
        batch_sampler.sampler = ResumeSampler(
            batch_sampler.sampler, done * batch_size, position * batch_size,
            lambda: self._restore(runner))


def add_exact_resume_hook(cfg) -> None:
    """Add :class:`ExactResumeHook` to ``cfg.custom_hooks`` unless there."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(
            isinstance(h, dict) and h.get('type') in (
                'ExactResumeHook', 'mmpetl.ExactResumeHook', ExactResumeHook)
            for h in hooks):
        hooks.append(dict(type='mmpetl.ExactResumeHook'))
    cfg.custom_hooks = hooks
