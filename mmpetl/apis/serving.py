# Copyright (c) mmpetl contributors. All rights reserved.
"""Serving several tasks from one frozen backbone in memory.

A merged checkpoint per task costs a whole model per task. Tasks adapted
from the same pre-trained backbone share all its weights but the few they
change: :class:`AdapterSwitcher` keeps that backbone once (the *untouched
originals*), keeps of each task only its adapters and everything outside
the backbone (head, neck, data preprocessor), and serves one *live* stock
model. Adding a task prepares, per live module, what a switch to it
writes (:meth:`~mmpetl.models.AdaptedSite.prepare_fold`): for a low-rank
input-affine site (RepAdapter, ARC) ``W U`` and ``V^T`` in the weight's
dtype and the folded biases, computed once from the originals; for other
sites the merge of :func:`mmpetl.models.merge.merge_adapters`, run at each
switch; the originals of the modules the task leaves stock; its selected
stock parameters (BitFit, LN-tuning). Switching to a task runs its prepared
folds (for a low-rank site one pass over the original ``W`` writing
``W + (W U) V^T`` into the live weight) and puts the task's head in place.

Because every switch writes from the originals and the prepared terms,
switching back to a task gives bit-identical weights, equal to that task's
merged checkpoint. Memory: the backbone once, plus a second copy of the
linears that adapters fold into (the live ones), plus each task's adapters
and head, plus its prepared ``W U`` (``out x r`` per low-rank site).
"""
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Union

import torch
from mmengine.config import Config
from torch import Tensor, nn

from ..fileio.configs import load_config_file
from ..fileio.errors import CheckpointError, first_line
from ..fileio.safe_load import load_checkpoint_file
from ..fileio.state_dicts import (check_finite, load_matching_state_dict,
                                  model_state_dict)
from ..models import AdaptedSite, FrozenBackbone, PreparedFold
from ..models.merge import merge_adapters, merge_blockers
from ..utils.errors import UnknownNameError
from ..models.stock_checkpoint import is_merged_checkpoint
from .reparam import build_model


def tensor_nbytes(tensors: Iterable[Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (a storage shared
    by several tensors counts once)."""
    storages = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
    return sum(storages.values())


def _tensors_of(*modules: nn.Module) -> Iterable[Tensor]:
    for module in modules:
        yield from module.parameters()
        yield from module.buffers()


def _stock_path(model: nn.Module, path: str) -> str:
    """The path in the merged (stock) model of the module at ``path`` in
    ``model``: every wrapper's ``backbone`` step removed."""
    parts, module = [], model
    names = path.split('.') if path else []
    for i, name in enumerate(names):
        if not (isinstance(module, FrozenBackbone) and name == 'backbone'):
            parts.append(name)
        module = getattr(module, name)
    return '.'.join(parts)


def _frozen_tensors(model: nn.Module) -> Dict[str, Tensor]:
    """Stock path -> tensor of every frozen backbone parameter and buffer of
    an adapter model (what its method leaves untouched)."""
    frozen = OrderedDict()
    for prefix, wrapper in model.named_modules():
        if not isinstance(wrapper, FrozenBackbone):
            continue
        head = f'{prefix}.' if prefix else ''
        keys = set(wrapper.frozen_state_keys())
        state = wrapper.backbone.state_dict(prefix='backbone.',
                                            keep_vars=True)
        for key in keys:
            frozen[_stock_path(model, head + key)] = state[key]
    return frozen


def _shared_child(model: nn.Module) -> str:
    """Name of the top-level child that holds the backbone wrapper."""
    if isinstance(model, FrozenBackbone):
        raise CheckpointError('the model is a bare backbone wrapper; serving '
                              'needs a whole model (backbone and head)')
    blocked = merge_blockers(model)
    if blocked:
        raise CheckpointError(
            f'the model does not fold into the stock backbone, so it cannot '
            f'be switched: {blocked[0]}')
    names = [
        name for name, child in model.named_children() if any(
            isinstance(m, FrozenBackbone) for m in child.modules())
    ]
    if len(names) != 1:
        raise CheckpointError(
            'the model must hold exactly one mmpetl backbone wrapper (e.g. '
            f'mmpetl.RepAdapterBackbone); found {len(names)}')
    return names[0]


def _task_sites(model: nn.Module) -> Dict[str, nn.Module]:
    """Stock path -> module of everything a task changes in the backbone:
    its adapted sites, and the modules that own its selected stock
    parameters (BitFit, LN-tuning) and its trained new layers."""
    sites = OrderedDict((_stock_path(model, path), module)
                        for path, module in model.named_modules()
                        if isinstance(module, AdaptedSite))
    for prefix, wrapper in model.named_modules():
        if not isinstance(wrapper, FrozenBackbone):
            continue
        head = f'{prefix}.backbone' if prefix else 'backbone'
        for name in {**wrapper.selected_parameters(),
                     **wrapper.trained_new_layers()}:
            owner = name.rpartition('.')[0]
            path = f'{head}.{owner}' if owner else head
            sites[_stock_path(model, path)] = model.get_submodule(path)
    return sites


class _Task:
    """One task: its adapter model (frozen tensors shared with the
    originals), what it changes in the backbone by stock path, its modules
    outside the backbone by name, and per live module (by stock path) what
    a switch to it writes there."""

    def __init__(self, model: nn.Module, shared_name: str):
        self.model = model
        self.sites = _task_sites(model)
        self.modules = OrderedDict((name, child)
                                   for name, child in model.named_children()
                                   if name != shared_name)
        self.folds: Dict[str, PreparedFold] = OrderedDict()


class AdapterSwitcher:
    """One frozen backbone, several tasks' adapters and heads, one live
    stock model that serves the task last switched to.

    Tasks are added from an adapter config and checkpoint (what
    ``tools/train.py`` writes); their frozen backbones must be the same
    pre-trained weights (checked value by value). The methods and sites may
    differ between tasks (RepAdapter on one, ARC attention-only on another):
    a site that the chosen task does not adapt gets its original weights.

    Example::

        switcher = AdapterSwitcher()
        switcher.add_task('cifar', 'repadapter_cifar.py', 'cifar.pth')
        switcher.add_task('dtd', 'arc_dtd.py', 'dtd.pth')
        model = switcher.switch('dtd')   # the stock model, with dtd folded
        model.test_step(data)

    Args:
        device (str | torch.device): Where the models live. Defaults to
            ``'cpu'``.
    """

    def __init__(self, device: Union[str, torch.device] = 'cpu'):
        self.device = torch.device(device)
        self.model: Optional[nn.Module] = None
        self.active: Optional[str] = None
        self._tasks: Dict[str, _Task] = OrderedDict()
        self._originals: Dict[str, Tensor] = OrderedDict()
        self._live_sites: Dict[str, nn.Module] = OrderedDict()
        self._shared_name = ''

    @property
    def tasks(self) -> List[str]:
        """Names of the tasks added, in order."""
        return list(self._tasks)

    def add_task(self, name: str, config: Union[str, Config],
                 checkpoint: str) -> None:
        """Load one task: its adapters and head, on the shared backbone.

        Args:
            name (str): The task's name, for :meth:`switch`.
            config (str | Config): The adapter config it was trained with.
            checkpoint (str): Its adapter checkpoint (adapters and head).

        Raises:
            CheckpointError: For a name already taken, a config without a
                backbone wrapper, a checkpoint that does not match it or is
                already merged, adapters that fold to non-finite weights, or
                a backbone other than the shared one.
        """
        if name in self._tasks:
            raise CheckpointError(f'task {name!r} is already loaded')
        cfg = config if isinstance(config, Config) else \
            load_config_file(config)
        source = load_checkpoint_file(checkpoint)
        if is_merged_checkpoint(source):
            raise CheckpointError(
                f'{checkpoint} is a merged checkpoint (a whole stock model); '
                'give the adapter checkpoint it was merged from')
        try:
            model = build_model(cfg)
        except Exception as e:
            raise CheckpointError(
                f'cannot build the model of task {name!r} ({first_line(e)})')
        shared_name = _shared_child(model)
        load_matching_state_dict(model, model_state_dict(source), checkpoint)
        model.to(self.device).eval()

        # Finite adapters can fold to Inf (1e20 * W): refused, as
        # tools/reparam.py refuses to write such a merge.
        merged = merge_adapters(model).eval()
        check_finite(merged.state_dict(), f'task {name!r}: the merged model')
        frozen = _frozen_tensors(model)
        if self.model is None:
            self._start(model, merged, frozen, shared_name)
        else:
            del merged
            self._tie(name, model, frozen, shared_name)
        task = _Task(model, shared_name)
        for path in task.sites:
            self._own_live_site(path)
        # Every task (this one, and the earlier ones for the live modules
        # this one adds) gets a prepared fold per live module.
        for each in (*self._tasks.values(), task):
            for path, live in self._live_sites.items():
                if path not in each.folds:
                    each.folds[path] = self._prepare(each, path, live)
        self._tasks[name] = task

    def _start(self, model: nn.Module, live: nn.Module,
               frozen: Dict[str, Tensor], shared_name: str) -> None:
        """Make the first task's frozen tensors the originals, and the live
        model its merged copy (``live``) sharing every tensor that no switch
        writes."""
        self._originals = frozen
        self._shared_name = shared_name
        shared = live.get_submodule(shared_name)
        for name, tensor in (*shared.named_parameters(),
                             *shared.named_buffers()):
            tensor.data = frozen[f'{shared_name}.{name}'].data
        for name, child in model.named_children():
            if name != shared_name:  # no copy of the first task's head
                setattr(live, name, child)
        self.model = live

    def _tie(self, name: str, model: nn.Module, frozen: Dict[str, Tensor],
             shared_name: str) -> None:
        """Point a later task's frozen tensors at the originals, after
        checking that they hold the same values."""
        if shared_name != self._shared_name or \
                frozen.keys() != self._originals.keys():
            raise CheckpointError(
                f'task {name!r} has another backbone than the loaded tasks '
                '(different modules or parameter names)')
        for key, tensor in frozen.items():
            original = self._originals[key]
            if tensor.shape != original.shape or not torch.equal(
                    tensor, original):
                raise CheckpointError(
                    f'task {name!r} was trained on other pre-trained weights '
                    f'than the loaded tasks ({key} differs); all tasks must '
                    'share one frozen backbone')
        for key, tensor in frozen.items():
            tensor.data = self._originals[key].data

    def _own_live_site(self, path: str) -> None:
        """Give the live module at ``path`` storage of its own (switches
        write there), leaving the originals untouched."""
        if path in self._live_sites:
            return
        module = self.model.get_submodule(path)
        for tensor in _tensors_of(module):
            tensor.data = tensor.data.clone()
        self._live_sites[path] = module

    def _prepare(self, task: _Task, path: str,
                 live: nn.Module) -> PreparedFold:
        """What a switch to ``task`` writes into the live module at
        ``path``: the site's prepared fold, the stock tensors of the module
        owning selected parameters, or the originals."""
        adapted = task.sites.get(path)
        if isinstance(adapted, AdaptedSite):
            return adapted.prepare_fold(live)
        if adapted is None:
            source = {key: self._originals[f'{path}.{key}']
                      for key in live.state_dict()}
        else:  # owner of selected parameters: already stock
            source = adapted.state_dict(keep_vars=True)
        return PreparedFold([(tensor, source[key]) for key, tensor in
                             live.state_dict(keep_vars=True).items()])

    @torch.no_grad()
    def switch(self, name: str) -> nn.Module:
        """Fold task ``name``'s adapters into the live weights, from the
        originals, and put its head (every module outside the backbone) in
        place.

        Returns:
            nn.Module: The live stock model, in eval mode.
        """
        if name not in self._tasks:
            raise UnknownNameError(f'no task {name!r}; loaded: {self.tasks}')
        task = self._tasks[name]
        for fold in task.folds.values():
            fold()
        for child, module in task.modules.items():
            setattr(self.model, child, module)
        self.active = name
        return self.model.eval()

    def memory(self) -> Dict[str, int]:
        """Bytes held, by part: ``backbone`` (the originals), ``tasks``
        (adapters and heads of all tasks), ``folds`` (what the tasks'
        prepared folds hold besides: ``W U``, ``V^T`` and folded biases of
        low-rank sites), ``live`` (the live model's own storage: the modules
        that switches write) and ``total`` (distinct storages of all)."""
        parts = [list(self._originals.values())]
        tasks = [task.model for task in self._tasks.values()]
        parts.append(list(_tensors_of(*tasks)))
        parts.append([
            tensor for task in self._tasks.values()
            for fold in task.folds.values() for tensor in fold.tensors()
        ])
        parts.append(list(_tensors_of(*filter(None, [self.model]))))
        sizes, held = [], []
        for part in parts:
            held += part
            sizes.append(tensor_nbytes(held))
        return dict(
            backbone=sizes[0],
            tasks=sizes[1] - sizes[0],
            folds=sizes[2] - sizes[1],
            live=sizes[3] - sizes[2],
            total=sizes[3])


__all__ = ['AdapterSwitcher', 'tensor_nbytes']
