# Copyright (c) mmpetl contributors. All rights reserved.
"""The standard protocol of the PETL papers, for ``tools/suites/vtab.py``:
a hyper-parameter search on the validation split, the pick per task, the
retraining with the picked values on the full training split, the test
split evaluated once per seed, and the data checked before any of it.

Per method and task (``task_dir = {work_dir}/{method}/{task}``)::

    search/{point}/result.json   one grid point, trained on the search
                                 split (VTAB-1k train800), top-1 on val200
    picked.json                  the grid with its validation top-1 and the
                                 pick (best validation top-1; ties: first)
    seed_{s}/result.json         the picked values, trained on the full
                                 training split (train800val200), top-1 on
                                 test; one per seed
    result.json                  the same without --seeds (the config's
                                 own seed)

The search runs use the first seed. A seed sets ``randomness.seed`` and
the ``seed`` of every dataset config that has one (the few-shot lists
``train_meta.list.num_shot_K.seed_S``). Every run with ``result.json`` is
skipped, an interrupted one resumes from its last checkpoint; the pick is
recomputed from the search results, so a resumed protocol picks the same.
"""
import ast
import copy
import datetime
import itertools
import json
import math
import os.path as osp
import sys
import time
from argparse import ArgumentTypeError
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

from mmengine.config import Config

from mmpetl.datasets import check_split_data
from mmpetl.fileio.outputs import atomic_output
from mmpetl.suites.task_suite import RESULT_FILE, run_task, write_markdown_csv
from mmpetl.utils.log_utils import console_warnings_only

#: Short names for ``--search``; any other key is a dotted config path.
SEARCH_ALIASES = {
    'scale': 'model.backbone.scale',
    'lr': 'optim_wrapper.optimizer.lr',
    'wd': 'optim_wrapper.optimizer.weight_decay',
}
#: Search splits per dataset type: (train dataset update, validation
#: dataset update) for configs without their own ``search_data =
#: dict(train=dict(...), val=dict(...))``.
SEARCH_SPLITS = {
    'mmpetl.VTAB1k': (dict(split='train800'), dict(split='val200')),
    'mmpetl.FewShot': (dict(), dict(split='val')),
    'mmpetl.FGVC': (dict(split='train'), dict(split='val')),
}
LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


class Run(NamedTuple):
    """One training run of the protocol: its config, folder, and the
    fields its ``result.json`` records besides top-1 and the counts."""
    cfg: Config
    work_dir: str
    record: dict


def search_item(item: str) -> Tuple[str, list]:
    """One ``--search`` item, ``'lr=1e-3,5e-3'`` -> ``('lr', [0.001,
    0.005])``: each value a Python literal; the values of ``scale``,
    ``lr`` and ``wd`` finite numbers (``lr`` > 0, ``wd`` >= 0), those of a
    dotted config key literals with finite numbers (a string quoted, e.g.
    ``"optim_wrapper.optimizer.type='SGD'"``); an unquoted word is refused
    (``lr=abc``), as is an empty value or a repeated key.

    Raises:
        argparse.ArgumentTypeError: One line saying what is wrong.
    """
    key, sep, text = item.partition('=')
    values = text.split(',')
    if not sep or not key or not text or not all(values):
        raise ArgumentTypeError(f'takes KEY=V1,V2,..., got {item!r}')
    parsed = []
    for value in values:
        try:
            parsed.append(ast.literal_eval(value))
        except (ValueError, SyntaxError):
            raise ArgumentTypeError(
                f'{key}={value}: {value!r} is not a value (a number, or a '
                'quoted string)')
        number = parsed[-1]
        numeric = isinstance(number, (int, float)) and not isinstance(
            number, bool)
        if numeric and not math.isfinite(number) or key in SEARCH_ALIASES \
                and not (numeric and math.isfinite(number)):
            raise ArgumentTypeError(f'{key}={value}: not a finite number')
        if (key == 'lr' and number <= 0) or (key == 'wd' and number < 0):
            raise ArgumentTypeError(
                f'{key}={value}: {key} must be {">" if key == "lr" else ">="}'
                ' 0')
    if len(set(map(repr, parsed))) < len(parsed):
        raise ArgumentTypeError(f'{item}: a value is given twice')
    return key, parsed


def parse_search(items: Optional[Sequence]) -> Dict[str, list]:
    """``['scale=0.1,1', 'lr=1e-3']`` (or their :func:`search_item`
    pairs) -> ``{'scale': [0.1, 1], 'lr': [0.001]}``.

    Raises:
        ValueError: A bad item (:func:`search_item`) or a repeated key.
    """
    grid = {}
    for item in items or ():
        try:
            key, values = search_item(item) if isinstance(item, str) \
                else item
        except ArgumentTypeError as e:
            raise ValueError(f'--search: {e}') from None
        if key in grid:
            raise ValueError(f'--search: {key} is given twice')
        grid[key] = values
    return grid


def _has_key(cfg: Config, dotted: str) -> bool:
    node = cfg
    for part in dotted.split('.'):
        try:
            node = node[part]
        except (KeyError, TypeError):
            return False
    return True


def grid_points(cfg: Config, search: Dict[str, list]) -> List[dict]:
    """The grid of ``search`` over the keys ``cfg`` has (``{}`` alone if
    none: nothing to search for this method, e.g. a linear probe has no
    ``scale``)."""
    keys = [k for k in search if _has_key(cfg, SEARCH_ALIASES.get(k, k))]
    return [dict(zip(keys, values))
            for values in itertools.product(*(search[k] for k in keys))]


def point_name(point: dict) -> str:
    """The folder name of a grid point, e.g. ``scale=0.1_lr=0.001``."""
    return '_'.join(f'{k}={v}' for k, v in point.items()) or 'default'


def with_values(cfg: Config, point: dict, seed: Optional[int]) -> Config:
    """A copy of ``cfg`` with the grid point's values and the seed."""
    cfg = copy.deepcopy(cfg)
    cfg.merge_from_dict({SEARCH_ALIASES.get(k, k): v
                         for k, v in point.items()})
    if seed is not None:
        cfg.merge_from_dict({'randomness.seed': seed})
        for loader in LOADERS:
            dataset = (cfg.get(loader) or {}).get('dataset') or {}
            if 'seed' in dataset:
                dataset['seed'] = seed
    return cfg


def search_splits(cfg: Config, where: str) -> tuple:
    """(train, val) dataset updates of the search phase."""
    if cfg.get('search_data'):
        return (dict(cfg.search_data.get('train', {})),
                dict(cfg.search_data['val']))
    kind = cfg.train_dataloader.dataset.type
    if kind not in SEARCH_SPLITS:
        raise ValueError(
            f'{where}: no validation split known for dataset type {kind}; '
            'set search_data = dict(train=dict(...), val=dict(...)) in the '
            'config (updates of the train and test datasets)')
    return SEARCH_SPLITS[kind]


def search_runs(cfg: Config, task_dir: str, points: List[dict],
                seed: Optional[int], where: str) -> List[Run]:
    """One run per grid point: trained on the search split, tested on the
    validation split (no runs for a grid of ``{}`` alone)."""
    if points == [{}]:
        return []
    train, val = search_splits(cfg, where)
    runs = []
    for point in points:
        run_cfg = with_values(cfg, point, seed)
        run_cfg.train_dataloader.dataset.update(copy.deepcopy(train))
        run_cfg.test_dataloader.dataset.update(copy.deepcopy(val))
        runs.append(Run(run_cfg, osp.join(task_dir, 'search',
                                          point_name(point)),
                        dict(split='val', seed=seed, params=point)))
    return runs


def final_runs(cfg: Config, task_dir: str, picked: dict,
               seeds: Sequence[Optional[int]]) -> List[Run]:
    """One run per seed with the picked values, tested on the test split
    (``seeds == [None]``: one run with the config's seed, in
    ``task_dir``)."""
    return [Run(with_values(cfg, picked, seed),
                task_dir if seed is None else osp.join(task_dir,
                                                       f'seed_{seed}'),
                dict(split='test', seed=seed, params=picked))
            for seed in seeds]


def finished(run: Run) -> Optional[dict]:
    """The run's result if it has one."""
    path = osp.join(run.work_dir, RESULT_FILE)
    if not osp.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def pick(points: List[dict], results: List[dict], task_dir: str,
         write: bool) -> dict:
    """The grid point with the best validation top-1 (the first of equal
    ones): ``dict(picked, val_top1, grid)``, with ``write`` also written
    to ``{task_dir}/picked.json``."""
    best = max(range(len(points)), key=lambda i: (results[i]['top1'], -i))
    summary = dict(picked=points[best], val_top1=results[best]['top1'],
                   grid=[dict(params=p, val_top1=r['top1'])
                         for p, r in zip(points, results)])
    if write:
        with atomic_output(osp.join(task_dir, 'picked.json')) as tmp:
            with open(tmp, 'w') as f:
                json.dump(summary, f, indent=2)
    return summary


class DataChecker:
    """Checks the datasets of runs once each (see
    :func:`mmpetl.datasets.check_split_data`) and returns the data variant
    to record per run."""

    def __init__(self, data_variant: Optional[str] = None):
        self.data_variant = data_variant
        self.checked: Dict[str, object] = {}

    def __call__(self, run: Run, where: str) -> str:
        variants = set()
        for loader in ('train_dataloader', 'test_dataloader'):
            dataset = run.cfg[loader].dataset
            key = json.dumps(dataset.to_dict(), sort_keys=True, default=str)
            if key not in self.checked:
                self.checked[key] = check_split_data(
                    dataset, f'{where}, {loader[:-len("_dataloader")]} data',
                    self.data_variant,
                    run.cfg.get('default_scope') or 'mmpretrain')
            variants.add(self.checked[key].data_variant)
        return '+'.join(sorted(variants))


def write_search_table(grids: Dict[tuple, dict], out_stem: str) -> List[str]:
    """``{out_stem}.md`` / ``.csv``: per method, task and grid point the
    validation top-1, ``*`` at the pick."""
    rows = []
    for (method, task), summary in grids.items():
        for entry in summary['grid']:
            rows.append(dict(method=method, task=task, **entry['params'],
                             val_top1=entry['val_top1'],
                             picked='*' if entry['params'] ==
                             summary['picked'] else ''))
    keys = list(dict.fromkeys(k for s in grids.values()
                              for e in s['grid'] for k in e['params']))
    columns = ['method', 'task', *keys, 'val_top1', 'picked']

    def cell(row, column):
        value = row.get(column)
        if isinstance(value, float) and column == 'val_top1':
            return f'{value:.2f}'
        return '-' if value is None else str(value)

    return write_markdown_csv(rows, columns, cell, out_stem)


class Protocol:
    """The protocol for every ``(method, task): cfg``, planned and its data
    checked at construction (before any training: an error there is a
    ``ValueError`` / ``AnnotationError`` naming the task and the file);
    :meth:`run` runs the search runs, the pick and the final runs,
    skipping finished runs and printing one line per run on the main
    process.

    Args:
        configs (dict): ``{(method, task): cfg}``.
        work_dir (str): The suite's work folder.
        search (dict): ``{key: values}`` (:func:`parse_search`); empty for
            no search.
        seeds (list): Seeds of the final runs; ``[None]`` for one run with
            the config's seed.
        data_variant (str, optional): See :func:`check_split_data`.
        is_main (bool): Whether this process prints and writes picks.
    """

    def __init__(self,
                 configs: Dict[tuple, Config],
                 work_dir: str,
                 search: Dict[str, list],
                 seeds: Sequence[Optional[int]] = (None, ),
                 data_variant: Optional[str] = None,
                 is_main: bool = True):
        self.configs, self.seeds, self.is_main = configs, list(seeds), \
            is_main
        self.plans = {}
        for (method, task), cfg in configs.items():
            where = f'{method} / {task}'
            task_dir = osp.join(work_dir, method, task)
            points = grid_points(cfg, search)
            unsearched = [k for k in search if k not in points[0]]
            if unsearched and is_main:
                print(f'{where}: not searched over {", ".join(unsearched)} '
                      '(not in its config: ' + ', '.join(
                          SEARCH_ALIASES.get(k, k) for k in unsearched) + ')')
            searches = search_runs(cfg, task_dir, points, self.seeds[0],
                                   where)
            self.plans[method, task] = (where, task_dir, points, searches)
        # The final runs' data does not depend on the pick.
        check = DataChecker(data_variant)
        self.variants = {}
        for (method, task), (where, task_dir, _, searches) in \
                self.plans.items():
            finals = final_runs(configs[method, task], task_dir, {},
                                self.seeds)
            for run in searches + finals:
                if finished(run) is None:
                    # Rank 0 checks the data (in a dry run, just after
                    # writing it); the other ranks meet it in the task's
                    # process group, so never read it before it is there.
                    self.variants[run.work_dir] = (
                        check(run, where) if is_main else data_variant)

    def _execute(self, run: Run, where: str, task_dir: str,
                 launcher: str) -> dict:
        """Run (or skip) one run and print one line for it: ``run k of
        N``, the run, its result and time, and the ETA of the suite (the
        mean time of the runs trained so far times the runs left); on a
        terminal the line starts as the run starts. The Runner's own
        console log goes to its log file
        (:func:`~mmpetl.utils.log_utils.console_warnings_only`)."""
        label = where if run.work_dir == task_dir else \
            f'{where} / {osp.relpath(run.work_dir, task_dir)}'
        self.done += 1
        head = f'run {self.done} of {self.total}, {label}'
        result = finished(run)
        if result is not None:
            if self.is_main:
                print(f'{head}: done, skipped', flush=True)
            return result
        live = self.is_main and sys.stdout.isatty()
        if live:
            print(head, end='', flush=True)
        start = time.time()
        with console_warnings_only():
            result = run_task(run.cfg, run.work_dir, launcher,
                              data_variant=self.variants[run.work_dir],
                              **run.record)
        self.times.append(time.time() - start)
        if self.is_main:
            left = self.unfinished - len(self.times)
            eta = datetime.timedelta(seconds=round(
                sum(self.times) / len(self.times) * left))
            print(f'{chr(13) if live else ""}{head}: top-1 '
                  f'{result["top1"]:.2f} ({run.record["split"]}), trainable '
                  f'{result["trainable"]:,} (backbone '
                  f'{result["trainable_backbone"]:,}) of {result["total"]:,}'
                  f', {self.times[-1]:.0f} s, ETA {eta}', flush=True)
        return result

    def run(self, launcher: str = 'none') -> Dict[tuple, dict]:
        """Run everything; returns the pick summaries (``picked.json``)
        per ``(method, task)`` that searched."""
        grids = {}
        self.done, self.times = 0, []
        self.total = sum(len(searches) + len(self.seeds)
                         for *_, searches in self.plans.values())
        # Search runs and final runs without a result, as planned.
        self.unfinished = len(self.variants)
        for (method, task), (where, task_dir, points, searches) in \
                self.plans.items():
            picked = {}
            if searches:
                results = [self._execute(run, where, task_dir, launcher)
                           for run in searches]
                grids[method, task] = pick(points, results, task_dir,
                                           write=self.is_main)
                picked = grids[method, task]['picked']
                if self.is_main:
                    print(f'{where}: picked {point_name(picked)} (val '
                          f'top-1 {grids[method, task]["val_top1"]:.2f})')
            for run in final_runs(self.configs[method, task], task_dir,
                                  picked, self.seeds):
                self._execute(run, where, task_dir, launcher)
        return grids
