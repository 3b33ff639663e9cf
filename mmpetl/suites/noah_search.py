# Copyright (c) mmpetl contributors. All rights reserved.
"""NOAH's three stages for one task: supernet training, the evolutionary
search on the validation split, and the found subnet's retraining config.

Per task (``task_dir = {work_dir}/noah/{task}``)::

    supernet/result.json     stage 1 done: the supernet (a random subnet
                             per step, :class:`NOAHSupernetHook`) trained on
                             the search split (VTAB-1k train800); top-1 of
                             its largest subnet on val200
    search/state.json        stage 2 after each search epoch (resumed)
    search/arch.json         stage 2 done: the found subnet, its val200
                             top-1 and trainable parameters
    {prefix}_noah-subnet_{task}.py
                             the subnet's retraining config, standalone (a
                             user trains it with tools/train.py); stage 3
                             is the suite's ordinary run of it

A stage whose output exists is skipped; an interrupted one resumes (the
supernet from its last checkpoint, the search from its last epoch).

The search is the reference's ``evolution.py`` (ZhangYuanhan-AI/NOAH):
a population of 50 subnets within the parameter limit, each scored by
top-1 on the validation split with the supernet's weights; per epoch the
top 10 so far are kept, 25 mutations (per module, with probability
``m_prob``, the depth is redrawn with probability ``s_prob``; a longer
depth draws dimensions for the new layers) and 25 crossovers (per module,
one parent's list) are made and the population is filled up with random
subnets; 15 epochs (its VTAB-1k script). The winner is the best validation
top-1 (the first of equal ones).
"""
import copy
import json
import os
import os.path as osp
import random
import time
from typing import Callable, Dict, List, Optional, Tuple

import torch
from mmengine.config import Config

from mmpetl.fileio.outputs import atomic_output
from mmpetl.models.adapters.noah import MODULES

#: The reference's search settings (``evolution.py`` arguments; epochs from
#: its VTAB-1k script; ``param_limit`` its default, 0.64M, in parameters).
SEARCH_DEFAULTS = dict(population=50, select=10, mutation=25, crossover=25,
                       m_prob=0.2, s_prob=0.4, epochs=15, param_limit=640_000,
                       min_param_limit=0, seed=0)
#: ``--dry-run``: a search that only proves it runs.
QUICK_SEARCH = dict(population=4, select=2, mutation=2, crossover=2,
                    epochs=1)

Arch = Dict[str, List[int]]


def arch_key(arch: Arch) -> str:
    """A subnet as a string key, e.g. ``'10,5,0|1,1,0|5,0,0'``."""
    return '|'.join(','.join(map(str, arch[m])) for m in MODULES)


def key_arch(key: str) -> Arch:
    return {m: [int(d) for d in part.split(',')]
            for m, part in zip(MODULES, key.split('|'))}


def _depth(dims: List[int]) -> int:
    """Layers before the first 0 (the reference's current depth)."""
    return next((i for i, d in enumerate(dims) if d == 0), len(dims))


class EvolutionSearch:
    """The reference's evolutionary search over a NOAH search space.

    Args:
        space (dict): ``{module: dict(dims=..., depths=...)}``, resolved
            (the supernet's ``space``).
        num_layers (int): Layers of the backbone.
        count (callable): ``arch -> trainable parameters``.
        evaluate (callable): ``arch -> validation top-1``.
        state_file (str, optional): Where each epoch's state is written and
            read back (resume).
        **settings: Those of :data:`SEARCH_DEFAULTS`.
    """

    def __init__(self, space: dict, num_layers: int,
                 count: Callable[[Arch], int],
                 evaluate: Callable[[Arch], float],
                 state_file: Optional[str] = None, **settings):
        unknown = set(settings) - set(SEARCH_DEFAULTS)
        if unknown:
            raise ValueError(f'NOAH search: unknown setting(s) '
                             f'{sorted(unknown)}; known: '
                             f'{sorted(SEARCH_DEFAULTS)}')
        self.cfg = dict(SEARCH_DEFAULTS, **settings)
        self.space, self.num_layers = space, num_layers
        self.count, self.evaluate = count, evaluate
        self.state_file = state_file
        self.rng = random.Random(self.cfg['seed'])
        self.scores: Dict[str, dict] = {}  # key -> params, top1
        self.candidates: List[str] = []
        self.top: List[str] = []
        self.epoch = 0

    # Candidates.
    def _random(self) -> Arch:
        depths = {m: self.rng.choice(self.space[m]['depths'])
                  for m in MODULES}
        return {m: self._dims(m, depths[m]) +
                [0] * (self.num_layers - depths[m]) for m in MODULES}

    def _dims(self, module: str, count: int) -> List[int]:
        return [self.rng.choice(self.space[module]['dims'])
                for _ in range(count)]

    def _mutate(self) -> Arch:
        arch = key_arch(self.rng.choice(self.top))
        for module in MODULES:
            if self.rng.random() >= self.cfg['m_prob']:
                continue
            dims = arch[module]
            depth = _depth(dims)
            new = (self.rng.choice(self.space[module]['depths'])
                   if self.rng.random() < self.cfg['s_prob'] else depth)
            kept = dims[:min(new, depth)]
            arch[module] = kept + self._dims(module, new - len(kept)) + \
                [0] * (self.num_layers - max(new, len(kept)))
        return arch

    def _cross(self) -> Arch:
        first = key_arch(self.rng.choice(self.top))
        second = key_arch(self.rng.choice(self.top))
        arch = {m: self.rng.choice([first[m], second[m]]) for m in MODULES}
        self.rng.choice((0, 0))  # the reference's prefix list (all 0)
        return arch

    def _admit(self, arch: Arch) -> bool:
        """Score ``arch`` if it is new and within the limits (the
        reference's ``is_legal``)."""
        key = arch_key(arch)
        if key in self.scores:
            return False
        params = self.count(arch)
        if not self.cfg['min_param_limit'] <= params <= \
                self.cfg['param_limit']:
            return False
        self.scores[key] = dict(params=params, top1=self.evaluate(arch))
        return True

    def _collect(self, draw: Callable[[], Arch], wanted: int, tries: int,
                 into: List[str]) -> List[str]:
        """Draw until ``into`` holds ``wanted`` admitted subnets, at most
        ``tries`` draws; ten at a time, as the reference's
        ``stack_random_cand`` (so a seed gives the reference's sequence)."""
        while len(into) < wanted and tries > 0:
            for arch in [draw() for _ in range(10)]:
                if len(into) >= wanted or tries <= 0:
                    break
                tries -= 1
                if self._admit(arch):
                    into.append(arch_key(arch))
        return into

    def _fill_random(self) -> None:
        size = self.cfg['population']
        self._collect(self._random, size, 1000 * size, self.candidates)
        if len(self.candidates) < size:
            raise ValueError(
                f'NOAH search: only {len(self.candidates)} new subnets of '
                f'{size} within the parameter limits '
                f'[{self.cfg["min_param_limit"]:,}, '
                f'{self.cfg["param_limit"]:,}] in {1000 * size} draws; widen '
                'noah.search.param_limit or the search space')

    def _rank(self) -> None:
        ranked = sorted(dict.fromkeys(self.top + self.candidates),
                        key=lambda k: -self.scores[k]['top1'])
        self.top = ranked[:self.cfg['select']]

    # State.
    def _save(self) -> None:
        if self.state_file is None:
            return
        version, internal, gauss = self.rng.getstate()
        state = dict(epoch=self.epoch, rng=[version, list(internal), gauss],
                     scores=self.scores, candidates=self.candidates,
                     top=self.top, settings=self.cfg)
        with atomic_output(self.state_file) as tmp:
            with open(tmp, 'w') as f:
                json.dump(state, f)

    def _load(self) -> None:
        if self.state_file is None or not osp.isfile(self.state_file):
            return
        with open(self.state_file) as f:
            state = json.load(f)
        if state['settings'] != self.cfg:
            raise ValueError(
                f'{self.state_file} is the state of a search with other '
                'settings; remove it (or its folder) to search again')
        version, internal, gauss = state['rng']
        self.rng.setstate((version, tuple(internal), gauss))
        self.epoch, self.scores = state['epoch'], state['scores']
        self.candidates, self.top = state['candidates'], state['top']

    def run(self, log: Callable[[str], None] = print) -> dict:
        """Search; returns ``dict(arch, val_top1, params, evaluated,
        top)``."""
        self._load()
        if not self.epoch:
            self._fill_random()
        while self.epoch < self.cfg['epochs']:
            self._rank()
            best = self.scores[self.top[0]]
            log(f'NOAH search epoch {self.epoch}: best val top-1 '
                f'{best["top1"]:.2f} ({best["params"]:,} params), '
                f'{len(self.scores)} subnets scored')
            mutated = self._collect(self._mutate, self.cfg['mutation'],
                                    10 * self.cfg['mutation'], [])
            crossed = self._collect(self._cross, self.cfg['crossover'],
                                    10 * self.cfg['crossover'], [])
            self.candidates = mutated + crossed
            self._fill_random()
            self.epoch += 1
            self._save()
        self._rank()
        best = self.top[0]
        return dict(arch=key_arch(best), val_top1=self.scores[best]['top1'],
                    params=self.scores[best]['params'],
                    evaluated=len(self.scores),
                    top=[dict(arch=k, **self.scores[k]) for k in self.top])


@torch.no_grad()
def top1(model: torch.nn.Module, loader) -> float:
    """Top-1 (percent) of ``model`` (an mmpretrain classifier) on
    ``loader``."""
    model.eval()
    correct = total = 0
    for batch in loader:
        for sample in model.test_step(batch):
            correct += int(sample.pred_label.item() ==
                           sample.gt_label.item())
            total += 1
    return 100. * correct / max(total, 1)


def retrain_config(cfg: Config, arch: Arch) -> Config:
    """The subnet's retraining config from the supernet config ``cfg``:
    the backbone built at ``arch``, the top-level settings of
    ``cfg.noah.retrain`` (its schedule), its splits (``train_split``;
    ``test_split`` for validation and test), and no supernet hook."""
    retrain = copy.deepcopy(cfg)
    settings = dict(retrain.pop('noah')['retrain'])
    backbone = retrain.model.backbone
    backbone.pop('search_space')
    backbone['arch'] = arch
    splits = dict(train=settings.pop('train_split', None),
                  val=settings.pop('test_split', None))
    splits['test'] = splits['val']
    for key, value in settings.items():
        retrain[key] = value
    for name, split in splits.items():
        if split is not None and retrain.get(f'{name}_dataloader'):
            retrain[f'{name}_dataloader'].dataset.split = split
    if 'max_epochs' in retrain:  # the configs' helper variable
        retrain.max_epochs = retrain.train_cfg.max_epochs
    retrain.pop('model_wrapper_cfg', None)
    retrain.custom_hooks = [
        h for h in retrain.get('custom_hooks', [])
        if h.get('type') not in ('NOAHSupernetHook',
                                 'mmpetl.NOAHSupernetHook')
    ]
    return retrain


def search_subnet(cfg: Config, checkpoint: str, work_dir: str,
                  quick: bool = False) -> dict:
    """Stage 2: the evolutionary search with the supernet of ``cfg``
    loaded from ``checkpoint``, each subnet scored on ``cfg``'s test
    dataloader (the validation split)."""
    from mmengine.runner import Runner

    from mmpetl.utils.log_utils import init_records_at_debug
    cfg = copy.deepcopy(cfg)
    settings = dict(cfg.noah.get('search', {}), **(QUICK_SEARCH if quick
                                                     else {}))
    cfg.work_dir, cfg.load_from, cfg.resume = work_dir, checkpoint, False
    cfg.launcher = 'none'
    with init_records_at_debug():
        runner = Runner.from_cfg(cfg)
    runner.load_or_resume()
    loader = runner.test_loop.dataloader
    model = runner.model
    backbone = model.backbone

    def evaluate(arch: Arch) -> float:
        backbone.set_arch(arch)
        return top1(model, loader)

    search = EvolutionSearch(backbone.space, len(backbone.layers),
                             backbone.arch_parameters, evaluate,
                             osp.join(work_dir, 'state.json'), **settings)
    result = search.run(log=runner.logger.info)
    result['param_limit'] = search.cfg['param_limit']
    return result


def run_noah_stages(cfg: Config, task_dir: str, name: str,
                    launcher: str = 'none', is_main: bool = True,
                    quick: bool = False, **record) -> Tuple[Config, str]:
    """Stages 1 and 2 for one task (skipping those done); returns the
    retraining config and the path it was written to.

    Args:
        cfg (Config): The task's supernet config (``noah = dict(search=...,
            retrain=...)``).
        task_dir (str): The task's folder.
        name (str): The retraining config's file name.
        launcher (str): The supernet training's launcher.
        is_main (bool): Whether this process searches and writes (the
            others wait for ``search/arch.json``).
        quick (bool): A small search (``--dry-run``).
        **record: Fields recorded in the supernet's ``result.json``.
    """
    from mmpetl.suites.task_suite import RESULT_FILE, run_task
    supernet_dir = osp.join(task_dir, 'supernet')
    if not osp.isfile(osp.join(supernet_dir, RESULT_FILE)):
        run_task(cfg, supernet_dir, launcher, split='val', **record)
    arch_file = osp.join(task_dir, 'search', 'arch.json')
    if is_main and not osp.isfile(arch_file):
        with open(osp.join(supernet_dir, 'last_checkpoint')) as f:
            checkpoint = f.read().strip()
        found = search_subnet(cfg, checkpoint, osp.dirname(arch_file), quick)
        with atomic_output(arch_file) as tmp:
            with open(tmp, 'w') as f:
                json.dump(found, f, indent=2)
    while not osp.isfile(arch_file):  # the main process searches
        time.sleep(5)
    with open(arch_file) as f:
        found = json.load(f)
    retrain = retrain_config(cfg, found['arch'])
    path = osp.join(task_dir, name)
    if is_main and not osp.isfile(path):
        os.makedirs(task_dir, exist_ok=True)
        with atomic_output(path) as tmp:
            retrain.dump(tmp)
    return retrain, path
