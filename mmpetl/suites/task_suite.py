# Copyright (c) mmpetl contributors. All rights reserved.
"""Run one config per task of a suite (VTAB-1k, or any list of tasks) with
MMEngine's Runner, resume where a previous run stopped, and collect one
results table. The library side of ``tools/suites/vtab.py``.

Per method and task, ``{work_dir}/{method}/{task}/`` holds the runner's
files and ``result.json`` (top-1 on the test split, trainable parameters,
data variant), written atomically when the task is finished: a task with
``result.json`` is skipped; a task without it but with a ``last_checkpoint``
resumes from that checkpoint.

The standard protocol (:mod:`mmpetl.suites.protocol`) adds, per task, one
run per point of a hyper-parameter grid trained on the search split and
evaluated on the validation split (``{task}/search/{point}/``), the pick
(``{task}/picked.json``), and one run per seed of the picked values on
the full training split, tested once (``{task}/seed_{s}/``); the tables
then give mean ± std over seeds.
"""
import copy
import csv
import glob
import json
import math
import os
import os.path as osp
import statistics
from typing import Dict, List, Optional, Sequence

from mmengine.config import Config
from mmengine.model import is_model_wrapper
from mmengine.runner import Runner

from mmpetl.datasets.vtab1k import VTAB1K_GROUPS, VTAB1K_TASKS
from mmpetl.engine.hooks.exact_resume_hook import add_exact_resume_hook
from mmpetl.engine.hooks.parameter_count_hook import count_parameters
from mmpetl.fileio.outputs import atomic_output
from mmpetl.models.merge import merge_blockers
from mmpetl.utils import InputError
from mmpetl.utils.compat import cpu_distributed

RESULT_FILE = 'result.json'
# Where wrappers keep the stock backbone config: mmpetl's wrappers
# (`backbone`), mmpretrain's LoRAModel (`module`).
WRAPPED_BACKBONE_KEYS = ('backbone', 'module')
# Small versions of each backbone type for --dry-run, with their output
# width: same code paths (adapter sites, heads, necks), a few thousand
# parameters, large patches (few tokens at the configs' 224x224 input).
TINY_ARCHS = {
    'VisionTransformer': (dict(
        arch=dict(embed_dims=32, num_layers=2, num_heads=2,
                  feedforward_channels=64),
        patch_size=32), 32),
    'SwinTransformer': (dict(
        arch=dict(embed_dims=16, depths=[1, 1, 1, 1],
                  num_heads=[1, 1, 2, 2]),
        patch_size=16,
        pad_small_map=True), 128),
}


# Dataset types --dry-run points at stand-in data, and the config key
# naming their task / set.
STANDIN_TYPES = {'mmpetl.VTAB1k': 'task', 'mmpetl.FewShot': 'name'}


def method_folders(config_dir: str, first: Sequence[str] = ()) -> List[str]:
    """The methods of a suite: the folders of ``config_dir`` but ``_base_``
    (one per method, e.g. ``configs/compare/lora``), those named in
    ``first`` first (in that order), then the rest sorted by name."""
    names = sorted(name for name in os.listdir(config_dir) if name != '_base_'
                   and osp.isdir(osp.join(config_dir, name)))
    return [name for name in first if name in names] + [
        name for name in names if name not in first]


def stock_backbone(model_cfg: dict) -> dict:
    """The stock backbone config inside ``model_cfg.backbone``, looking
    through adapter / LoRA wrappers."""
    backbone = model_cfg['backbone']
    while True:
        inner = next((backbone[k] for k in WRAPPED_BACKBONE_KEYS
                      if isinstance(backbone.get(k), dict)), None)
        if inner is None:
            return backbone
        backbone = inner


def replace_backbone(cfg: Config, backbone: dict, neck: Optional[dict],
                     feat_dims: int) -> None:
    """Put another stock backbone (and neck, head input width) into every
    method's config, keeping the wrappers around it: how ViT-L/16 and
    Swin-B run any method x task (see ``configs/vtab/_base_/backbones``)."""
    stock = stock_backbone(cfg.model)
    stock.clear()
    stock.update(copy.deepcopy(backbone))
    cfg.model.neck = copy.deepcopy(neck)
    cfg.model.head.in_channels = feat_dims


def shrink_for_dry_run(cfg: Config, data_root: str) -> None:
    """A few iterations on tiny data with a tiny backbone of the same type,
    no pre-trained weights: every other setting (wrappers, heads, hooks,
    pipeline, schedule types) stays the config's. VTAB-1k and few-shot
    datasets read the stand-in data under ``data_root`` (see
    :func:`write_standin_data`); other datasets keep their own."""
    stock = stock_backbone(cfg.model)
    if stock['type'] not in TINY_ARCHS:
        raise ValueError(f'--dry-run knows no tiny {stock["type"]}; add it '
                         'to mmpetl.suites.task_suite.TINY_ARCHS')
    arch, feat_dims = TINY_ARCHS[stock['type']]
    stock.update(copy.deepcopy(arch), init_cfg=None)
    cfg.model.head.in_channels = feat_dims
    for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        loader = cfg[name]
        loader.update(batch_size=4, num_workers=0, persistent_workers=False)
        # The first 8 samples (mmengine's `indices`); serializing a handful
        # of samples costs a gc.collect() per dataset.
        loader.dataset.update(indices=8, serialize_data=False)
        if loader.dataset.type in STANDIN_TYPES:
            loader.dataset.data_root = data_root
    # One epoch, or as few as leave each open-ended scheduler a step.
    open_ended = [s.get('begin', 0) for s in cfg.get('param_scheduler', [])
                  if 'end' not in s]
    cfg.train_cfg.update(max_epochs=1 + max(open_ended, default=0))
    cfg.default_hooks.logger.interval = 1
    cfg.default_hooks.checkpoint.interval = 1


def write_standin_data(configs: Sequence[Config], root: str) -> None:
    """Write the tiny stand-in data under ``root`` for the VTAB-1k tasks
    and few-shot sets that ``configs`` read (``--dry-run``)."""
    from mmpetl.datasets import write_fewshot_standin, write_vtab1k_standin
    names = {kind: set() for kind in STANDIN_TYPES}
    for cfg in configs:
        for loader in ('train_dataloader', 'test_dataloader'):
            dataset = cfg[loader].dataset
            if dataset.type in STANDIN_TYPES:
                names[dataset.type].add(dataset[STANDIN_TYPES[dataset.type]])
    write_vtab1k_standin(root, sorted(names['mmpetl.VTAB1k']))
    write_fewshot_standin(root, sorted(names['mmpetl.FewShot']))


def count_trainable(cfg: Config) -> Dict[str, int]:
    """Build ``cfg.model`` at its real size without pre-trained weights and
    count its parameters: ``trainable``, ``trainable.backbone``,
    ``trainable.head``, ``total``, and ``trainable_matrices.backbone`` (the
    trainable backbone parameters with two or more dimensions: the adapter
    weights without biases, scales and offsets)."""
    from mmengine.logging import MMLogger

    from mmpetl.apis.reparam import build_model
    cfg = copy.deepcopy(cfg)
    stock_backbone(cfg.model)['init_cfg'] = None
    logger = MMLogger.get_current_instance()
    level = logger.level
    logger.setLevel('WARNING')  # initialisation reports per parameter
    try:
        model = build_model(cfg)
    finally:
        logger.setLevel(level)
    counts = count_parameters(model)
    counts['trainable_matrices.backbone'] = sum(
        p.numel() for p in model.backbone.parameters()
        if p.requires_grad and p.dim() > 1)
    return counts


def run_task(cfg: Config, work_dir: str, launcher: str = 'none',
             **record) -> dict:
    """Train ``cfg`` in ``work_dir`` (resuming from its last checkpoint if
    there is one), test the last epoch's model (on the test dataloader's
    split), and write ``{work_dir}/result.json``: top-1, parameter counts,
    ``folds`` (whether the model merges into the stock one: no
    :func:`~mmpetl.models.merge.merge_blockers`) and the ``record`` fields
    (seed, data variant, ...). Returns the result."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = work_dir
    cfg.launcher = launcher
    # The test split is evaluated once, below; no validation during
    # training (nothing is selected on test).
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None
    if osp.isfile(osp.join(work_dir, 'last_checkpoint')):
        cfg.resume, cfg.load_from = True, None
    add_exact_resume_hook(cfg)
    with cpu_distributed(cfg, launcher):
        runner = Runner.from_cfg(cfg)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        counts = count_parameters(model)
        folds = not merge_blockers(model)
        runner.train()
        metrics = runner.test()
    result = dict(
        top1=float(metrics['accuracy/top1']),
        trainable=counts['trainable'],
        trainable_backbone=counts.get('trainable.backbone', 0),
        total=counts['total'],
        folds=folds,
        **record)
    if runner.rank == 0:
        with atomic_output(osp.join(work_dir, RESULT_FILE)) as tmp:
            with open(tmp, 'w') as f:
                json.dump(result, f, indent=2)
    return result


def task_results(task_dir: str) -> List[dict]:
    """The finished results of one method and task: ``result.json`` of a
    single run, or of each ``seed_{s}/`` run, in seed order."""
    single = osp.join(task_dir, RESULT_FILE)
    paths = [single] if osp.isfile(single) else sorted(
        glob.glob(osp.join(task_dir, 'seed_*', RESULT_FILE)),
        key=lambda p: int(osp.basename(osp.dirname(p))[len('seed_'):]))
    results = []
    for path in paths:
        with open(path) as f:
            results.append(json.load(f))
    return results


def load_results(work_root: str, methods: Sequence[str],
                 tasks: Sequence[str]) -> Dict[str, Dict[str, List[dict]]]:
    """``{method: {task: [result per seed]}}`` of the finished tasks."""
    results = {}
    for method in methods:
        for task in tasks:
            found = task_results(osp.join(work_root, method, task))
            if found:
                results.setdefault(method, {})[task] = found
    return results


def _mean(values: List[float]) -> Optional[float]:
    return sum(values) / len(values) if values else None


def _std(values: List[float]) -> Optional[float]:
    """Sample standard deviation; None below two values."""
    return statistics.stdev(values) if len(values) > 1 else None


def _aggregates(top1: Dict[str, float], tasks: Sequence[str]) -> dict:
    """Group means (VTAB-1k tasks), their mean and the flat mean of one
    seed's per-task top-1."""
    out = {}
    done = [t for t in tasks if t in top1]
    groups = {}
    for group in VTAB1K_GROUPS:
        members = [t for t in done if t in VTAB1K_TASKS and
                   VTAB1K_TASKS[t].group == group]
        if members:
            groups[group] = out[group] = _mean([top1[t] for t in members])
    if groups:
        out['mean_of_groups'] = _mean(list(groups.values()))
    out['mean'] = _mean([top1[t] for t in done])
    return out


def summarize(results: Dict[str, Dict[str, List[dict]]],
              tasks: Sequence[str]) -> List[dict]:
    """One row per method: top-1 per task, and for VTAB-1k tasks the mean
    of each group, the mean of the group means (the papers' convention)
    and the flat mean over tasks. With several seeds, each value is the
    mean over seeds and ``{column}_std`` its sample standard deviation
    (aggregates: computed per seed, then over seeds). A mean covers the
    finished tasks only; ``tasks_done`` says how many, ``seeds`` how many
    runs per task, ``data`` the data variants the results ran on, ``folds``
    whether the method merges into the stock model (``yes`` / ``no``;
    None for results written before runs recorded it)."""
    rows = []
    for method, per_task in results.items():
        row = dict(method=method)
        done = [t for t in tasks if t in per_task]
        per_seed: Dict[object, Dict[str, float]] = {}
        for task in done:
            values = [r['top1'] for r in per_task[task]]
            row[task] = _mean(values)
            row[f'{task}_std'] = _std(values)
            for i, r in enumerate(per_task[task]):
                per_seed.setdefault(r.get('seed', i), {})[task] = r['top1']
        for task in tasks:
            row.setdefault(task, None)
        per_seed_aggregates = [_aggregates(top1, tasks)
                               for top1 in per_seed.values()]
        for column in per_seed_aggregates[0] if per_seed_aggregates else ():
            values = [a[column] for a in per_seed_aggregates if column in a]
            row[column] = _mean(values)
            row[f'{column}_std'] = _std(values)
        row['tasks_done'] = f'{len(done)}/{len(tasks)}'
        row['seeds'] = max((len(per_task[t]) for t in done), default=0)
        runs = [r for t in done for r in per_task[t]]
        row['data'] = '+'.join(sorted({r.get('data_variant', '-')
                                       for r in runs})) or None
        for count in ('trainable_backbone', 'trainable'):
            row[count] = round(_mean([r[count] for r in runs]))
        folds = {r['folds'] for r in runs if 'folds' in r}
        row['folds'] = ('yes' if folds == {True} else
                        'no' if folds == {False} else None)
        rows.append(row)
    return rows


#: Cost columns: key in a costs file (:func:`load_costs`) -> markdown
#: header. The training ones are the keys ``tools/benchmarks/training.py
#: --out`` writes.
COST_COLUMNS = {
    'train_memory_rel_full': 'train memory / full',
    'step_time_rel_full': 'step time / full',
    'latency_rel_stock': 'latency / stock',
}
#: Markdown headers that say which mean is which (CSV keeps the keys).
HEADERS = {
    'mean_of_groups': 'mean of group means',
    'mean': 'flat mean',
    **COST_COLUMNS,
}


class CostsError(InputError, ValueError):
    """A ``--costs`` file that cannot be used; the message says why."""


def _no_constant(name: str):
    raise ValueError(f'{name} is not a finite number')


def load_costs(paths: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Read costs files and merge them: each a JSON object ``{method:
    {key: ratio}}`` (``tools/benchmarks/training.py --out`` writes one),
    e.g. ``{"lora": {"train_memory_rel_full": 0.41, "step_time_rel_full":
    0.66}}`` and ``{"lora": {"latency_rel_stock": 1.0}}``. The keys of
    :data:`COST_COLUMNS` are read (each optional; a later file's value
    wins); other keys of an entry (``train_memory_rel_floor``,
    ``trainable_backbone``, ...) are left alone.

    Raises:
        CostsError: One line naming the file and what is wrong: not a JSON
            object of objects, an entry with none of the keys, or a value
            that is not a number.
    """
    merged: Dict[str, Dict[str, float]] = {}
    for path in paths:
        try:
            with open(path) as f:
                # NaN / Infinity are no ratios: refused as JSON errors.
                data = json.load(f, parse_constant=_no_constant)
        except (OSError, ValueError) as e:
            raise CostsError(f'--costs {path}: cannot read it as JSON ({e})')
        if not isinstance(data, dict) or not all(
                isinstance(v, dict) for v in data.values()):
            raise CostsError(f'--costs {path}: expected a JSON object '
                             '{method: {key: ratio}}')
        for method, values in data.items():
            known = {k: v for k, v in values.items() if k in COST_COLUMNS}
            bad = [k for k, v in known.items()
                   if isinstance(v, bool) or not isinstance(v, (int, float))
                   or not math.isfinite(v) or v <= 0]
            if not known or bad:
                raise CostsError(
                    f'--costs {path}: method {method!r} needs finite ratios '
                    f'> 0 keyed by some of {list(COST_COLUMNS)}; got '
                    f'{bad or sorted(values)}')
            merged.setdefault(method, {}).update(known)
    return merged


def add_costs(rows: List[dict], costs: Dict[str, Dict[str, float]]) -> None:
    """Put each method's cost ratios (:func:`load_costs`) into its row;
    a method without figures gets None (``n/a`` in the table)."""
    for row in rows:
        for column in COST_COLUMNS:
            row[column] = costs.get(row['method'], {}).get(column)


def _columns(rows: List[dict], tasks: Sequence[str]) -> List[str]:
    extra = [c for c in (*VTAB1K_GROUPS, 'mean_of_groups')
             if any(c in r for r in rows)]
    costs = [c for c in COST_COLUMNS if any(c in r for r in rows)]
    return ['method', *tasks, *extra, 'mean', 'tasks_done', 'seeds', 'data',
            'trainable_backbone', 'trainable', 'folds', *costs]


def _text(value, std=None) -> str:
    if value is None:
        return '-'
    if isinstance(value, int):
        return f'{value:,}'
    if isinstance(value, float):
        return f'{value:.2f}' if std is None else f'{value:.2f} ± {std:.2f}'
    return str(value)


def write_markdown_csv(rows: List[dict], columns: List[str],
                       markdown_cells, out_stem: str,
                       headers: Optional[Dict[str, str]] = None
                       ) -> List[str]:
    """``{out_stem}.md`` (cells from ``markdown_cells(row, column)``,
    headers renamed by ``headers``) and ``{out_stem}.csv`` (the values,
    headed by the column keys), both written atomically."""
    headers = headers or {}
    markdown = ['| ' + ' | '.join(headers.get(c, c) for c in columns) +
                ' |',
                '|' + '---|' * len(columns)]
    markdown += ['| ' + ' | '.join(markdown_cells(r, c) for c in columns) +
                 ' |' for r in rows]
    csv_columns = [c for column in columns for c in (column, f'{column}_std')
                   if c == column or any(r.get(c) is not None for r in rows)]
    paths = [f'{out_stem}.md', f'{out_stem}.csv']
    with atomic_output(paths[0]) as tmp:
        with open(tmp, 'w') as f:
            f.write('\n'.join(markdown) + '\n')
    with atomic_output(paths[1]) as tmp:
        with open(tmp, 'w', newline='') as f:
            writer = csv.DictWriter(f, fieldnames=csv_columns,
                                    extrasaction='ignore')
            writer.writeheader()
            writer.writerows(rows)
    return paths


def terminal_table(rows: List[dict], width: int = 100) -> str:
    """The summary a terminal shows at the end of a suite: per method the
    mean (of group means where there are groups, ± std over seeds), tasks
    done, trainable backbone parameters, whether it folds and the cost
    ratios, as many of those columns as fit in ``width`` characters (the
    per-task figures are in the Markdown and CSV tables)."""
    mean = 'mean_of_groups' if any(
        r.get('mean_of_groups') is not None for r in rows) else 'mean'
    columns = [('method', 'method'), (mean, HEADERS[mean]),
               ('tasks_done', 'tasks'),
               ('trainable_backbone', 'trainable (backbone)'),
               ('folds', 'folds')] + [
                   (c, h) for c, h in COST_COLUMNS.items()
                   if any(c in r for r in rows)]
    table = [[h for _, h in columns]] + [[
        'n/a' if c in ('folds', *COST_COLUMNS) and r.get(c) is None else
        _text(r.get(c), r.get(f'{c}_std')) for c, _ in columns] for r in rows]
    widths = [max(len(line[i]) for line in table)
              for i in range(len(columns))]
    while len(widths) > 2 and sum(widths) + 3 * (len(widths) - 1) > width:
        widths.pop()
    lines = [' | '.join(cell.ljust(w) for cell, w in zip(line, widths))
             for line in table]
    lines.insert(1, '-+-'.join('-' * w for w in widths))
    return '\n'.join(line.rstrip() for line in lines)


def write_tables(rows: List[dict], tasks: Sequence[str],
                 out_stem: str) -> List[str]:
    """Write ``{out_stem}.md`` (``mean ± std`` where there are several
    seeds) and ``{out_stem}.csv`` (means, and ``{column}_std`` columns
    where there are several seeds) atomically. Parameter columns:
    trainable parameters of the backbone (adapters) and in all (with the
    head), averaged over tasks. ``mean_of_groups`` (markdown: "mean of
    group means", the papers' VTAB-1k convention) averages the group
    means; ``mean`` ("flat mean") averages the tasks. ``folds`` and the
    cost ratios (:func:`add_costs`) read ``n/a`` where unknown."""

    def cell(row, column):
        if column in ('folds', *COST_COLUMNS) and row.get(column) is None:
            return 'n/a'
        return _text(row.get(column), row.get(f'{column}_std'))

    return write_markdown_csv(rows, _columns(rows, tasks), cell, out_stem,
                              HEADERS)
