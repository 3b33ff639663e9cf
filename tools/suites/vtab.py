# Copyright (c) mmpetl contributors. All rights reserved.
"""Run methods over the VTAB-1k tasks (or any suite of per-task configs)
and write one results table.

    python tools/suites/vtab.py --methods repadapter arc lora [--tasks cifar dtd]
    torchrun --nproc_per_node 8 tools/suites/vtab.py --launcher pytorch --methods arc
    python tools/suites/vtab.py --methods repadapter --dry-run
    python tools/suites/vtab.py --methods all --costs train.json latency.json

Each method/task runs ``{config_dir}/{method}/{prefix}_{method}_{task}.py``
with MMEngine's Runner, in ``{work_dir}/{method}/{task}``; finished tasks
(``result.json``) are skipped and interrupted ones resume from their last
checkpoint; one console line per run (``run k of N``, method, task, ETA,
result), the Runner's own log (environment, config, iterations) in its
log file. Then ``{work_dir}/results.{md,csv}`` (per task, group means,
mean of group means, flat mean, trainable parameters, whether the method
folds into the stock model) and ``results.png`` (accuracy against
trainable parameters; with ``--costs`` also ``results_costs.png``) are
rewritten from every finished task, and a summary sized for the terminal
is printed.

``--methods all``: every method folder of ``--config-dir`` with a config
for each task, in :data:`METHODS` order (``configs/fgvc`` and
``configs/fewshot`` hold fewer methods; ``--config-dir`` picks the suite).
``--costs FILE [FILE ...]``: training memory and step time relative to
full fine-tuning and inference latency relative to the stock model, per
method, from JSON files (``tools/benchmarks/training.py --out`` writes
one; format: :func:`mmpetl.suites.task_suite.load_costs`,
docs/en/reproducing.md), as extra columns (``n/a`` where no file has the
figure).

The standard protocol (``mmpetl.suites.protocol``): ``--search
scale=0.1,0.5,1,5,10 lr=5e-4,1e-3`` trains each grid point on the search
split (VTAB-1k train800) and evaluates it on the validation split
(val200), picks per task the best validation top-1, retrains with it on
the full training split (train800val200) and tests once; ``--seeds 3``
repeats the final runs with seeds 0, 1, 2 and the tables give mean ± std
(``search.{md,csv}`` the grids and picks).

Before training, the data of every unfinished run is checked: image
counts against the benchmark's (VTAB-1k 800 / 200 / 1,000 / test size;
few-shot K x classes) and every image readable; ``--data-variant NAME``
accepts other data (counts not enforced) and records NAME next to each
result (``--dry-run``: ``standin``).

``--methods noah`` runs NOAH's three stages per task, each skipped when
its output exists: the supernet (``{work_dir}/noah/{task}/supernet``), the
evolutionary search on the validation split (``.../search/arch.json``),
then the found subnet's retraining config
(``.../{prefix}_noah-subnet_{task}.py``, standalone) as the method's run
(:mod:`mmpetl.suites.noah_search`).

``--dry-run`` builds every config and trains a few iterations (8 samples
per split, one epoch) on stand-in data in the VTAB-1k / few-shot layouts
(real scikit-learn digits) with a tiny backbone of the same type and no
weights; the tests use it. ``--count-params`` builds each method at its
real size and prints its trainable parameters.
"""
import argparse
import os
import os.path as osp
import shutil
import sys
from typing import List

import torch
from mmengine.config import Config, DictAction

from mmpetl.datasets import (FEWSHOT_SETS, FEWSHOT_SHOTS, FGVC_SETS,
                             VTAB1K_TASKS)
from mmpetl.benchmarks.plots import plot_accuracy_vs_parameters, plot_costs
from mmpetl.fileio.configs import load_config_file
from mmpetl.suites.noah_search import run_noah_stages
from mmpetl.suites.protocol import (Protocol, parse_search, search_item,
                                   write_search_table)
from mmpetl.suites.task_suite import (COST_COLUMNS, add_costs,
                                      count_trainable, load_costs,
                                      load_results, method_folders,
                                      replace_backbone, shrink_for_dry_run,
                                      summarize, terminal_table,
                                      write_standin_data, write_tables)
from mmpetl.fileio.switches import check_env_flags
from mmpetl.utils import InputError
from mmpetl.utils.arguments import (ToolParser, existing_file, folder_or_new,
                                    non_negative_int, positive_int)
from mmpetl.utils.log_utils import console_warnings_only
from mmpetl.utils.threads import set_thread_defaults

#: The checkout, or mmpetl/.mim of an installed wheel: configs/ and tools/.
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
#: --suite NAME: its config folder and tasks (the defaults of --config-dir
#: and --tasks).
SUITES = {
    'vtab': ('configs/vtab', list(VTAB1K_TASKS)),
    'fgvc': ('configs/fgvc', list(FGVC_SETS)),
    'fewshot': ('configs/fewshot', [f'{name}_{shots}shot'
                                    for name in FEWSHOT_SETS
                                    for shots in FEWSHOT_SHOTS]),
}
#: The table's row order for ``--methods all`` (folders not named here
#: follow, alphabetically).
METHODS = ('full-finetune', 'linear-probe', 'repadapter', 'repattn', 'arc',
           'lora', 'dora', 'ssf', 'bitfit', 'ln-tuning', 'fact-tt', 'fact-tk',
           'adaptformer', 'houlsby', 'pfeiffer', 'convpass', 'vpt-shallow',
           'vpt-deep', 'noah')


def parse_args():
    parser = ToolParser(description='Run methods over tasks')
    parser.add_argument('--methods', nargs='+',
                        default=['repadapter', 'arc'],
                        help='method folders of --config-dir, or "all" (every '
                        'folder with a config per task)')
    parser.add_argument(
        '--suite', choices=list(SUITES), default='vtab',
        help='VTAB-1k (19 tasks), FGVC (5 sets) or few-shot (5 sets x '
        '1/2/4/8/16 shots): the default --config-dir, --tasks, --work-dir')
    parser.add_argument('--tasks', nargs='+',
                        help='tasks (default: the suite\'s)')
    parser.add_argument('--config-dir',
                        help='default: the suite\'s, e.g. configs/vtab; '
                        'relative to the current directory, else to the '
                        'installed mmpetl')
    parser.add_argument('--prefix', default='vit-b16',
                        help='config names are {prefix}_{method}_{task}.py')
    parser.add_argument('--work-dir', type=folder_or_new,
                        help='default: work_dirs/{suite}')
    parser.add_argument('--data-root', help='replace the configs\' '
                        'data_root (e.g. the VTAB-1k folder)')
    parser.add_argument(
        '--backbone', type=existing_file,
        help='a backbone base (configs/vtab/_base_/backbones/vit-l16.py, '
        'swin-b.py) to run every method on instead of the configs\' own')
    parser.add_argument('--dry-run', action='store_true',
                        help='tiny backbone, tiny stand-in data, 2 '
                        'iterations per config')
    parser.add_argument('--count-params', action='store_true',
                        help='only build each method (first task, real '
                        'size, no weights) and print trainable parameters')
    parser.add_argument(
        '--search', nargs='+', metavar='KEY=V1,V2', type=search_item,
        help='grid searched on the validation split per task: scale, lr, '
        'wd or a dotted config key (e.g. scale=0.1,0.5,1,5,10 lr=1e-3,5e-3)')
    parser.add_argument('--seeds', type=positive_int, metavar='N',
                        help='final runs with seeds 0..N-1 (mean ± std); '
                        'default: one run with the config\'s seed')
    parser.add_argument(
        '--data-variant', metavar='NAME',
        help='run on data other than the benchmark\'s (counts not '
        'enforced); NAME is recorded next to each result')
    parser.add_argument(
        '--costs', nargs='+', metavar='FILE', type=existing_file,
        help='JSON files of cost ratios per method (train_memory_rel_full, '
        'step_time_rel_full, latency_rel_stock) added to the table')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of every config')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=non_negative_int,
                        default=0)
    args = parser.parse_args()
    try:  # MMPETL_TRUSTED_CHECKPOINTS=maybe: before any work
        check_env_flags()
    except InputError as e:
        parser.error(str(e))
    config_dir, tasks = SUITES[args.suite]
    args.config_dir = args.config_dir or config_dir
    args.tasks = args.tasks or tasks
    args.work_dir = args.work_dir or f'work_dirs/{args.suite}'
    if args.dry_run and args.data_variant is None:
        args.data_variant = 'standin'
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    args.config_dir = find_config_dir(parser, args.config_dir)
    return args


def find_config_dir(parser: argparse.ArgumentParser, path: str) -> str:
    """``path`` if it is a folder, else the same path under mmpetl's
    root (a checkout, or ``mmpetl/.mim`` of an installed wheel), so that
    ``--config-dir configs/vtab`` works from any directory."""
    if osp.isdir(path):
        return path
    shipped = osp.join(ROOT, path)
    if not osp.isabs(path) and osp.isdir(shipped):
        return shipped
    parser.error(f'--config-dir {path}: no such folder here, nor in '
                 f'mmpetl ({ROOT})')


def config_path(args, method: str, task: str) -> str:
    return osp.join(args.config_dir, method,
                    f'{args.prefix}_{method}_{task}.py')


def all_methods(args) -> List[str]:
    """The method folders of ``--config-dir`` with a config for every task,
    in :data:`METHODS` order, then alphabetical."""
    found = [m for m in method_folders(args.config_dir, METHODS)
             if all(osp.isfile(config_path(args, m, t)) for t in args.tasks)]
    if not found:
        raise InputError(f'--methods all: no folder of {args.config_dir} '
                         f'has {args.prefix}_<method>_<task>.py for every '
                         'task of --tasks')
    return found


def task_config(args, method: str, task: str, standin_root: str) -> Config:
    return adjust_config(args, load_config_file(
        config_path(args, method, task)), standin_root)


def adjust_config(args, cfg: Config, standin_root: str) -> Config:
    """``cfg`` with the command line's backbone, data root, dry-run
    shrinking and options."""
    if args.backbone:
        backbone = load_config_file(args.backbone)
        replace_backbone(cfg, backbone.backbone, backbone.get('neck'),
                         backbone.feat_dims)
    if args.data_root:
        for name in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
            cfg[name].dataset.data_root = args.data_root
    if args.dry_run:
        shrink_for_dry_run(cfg, standin_root)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def noah_stages(args, configs: dict, standin_root: str,
                is_main: bool) -> None:
    """NOAH's supernet training and search per task (stages 1 and 2);
    its configs become the found subnets' retraining configs (stage 3:
    the protocol's runs)."""
    for task in args.tasks:
        # The stages' Runners log to their own files, as the runs do.
        with console_warnings_only():
            retrain, _ = run_noah_stages(
                configs['noah', task], osp.join(args.work_dir, 'noah', task),
                f'{args.prefix}_noah-subnet_{task}.py', args.launcher,
                is_main, quick=args.dry_run, data_variant=args.data_variant)
        configs['noah', task] = adjust_config(args, retrain, standin_root)


def fail(error: Exception) -> None:
    print(f'error: {str(error).strip(chr(39))}', file=sys.stderr)
    sys.exit(2)


def main():
    args = parse_args()
    standin_root = osp.join(args.work_dir, 'standin_data')
    try:
        if args.methods == ['all']:
            args.methods = all_methods(args)
        costs = load_costs(args.costs) if args.costs else None
        search = parse_search(args.search)
        # Every config first: a typo fails now, not after hours of training.
        configs = {(m, t): task_config(args, m, t, standin_root)
                   for m in args.methods for t in args.tasks}
        for cfg in configs.values():  # MMPETL_NUM_WORKERS, torch threads
            set_thread_defaults(cfg)
    except (InputError, KeyError, ValueError) as e:
        fail(e)
    if args.count_params:
        for method in args.methods:
            counts = count_trainable(configs[method, args.tasks[0]])
            print(f'{method} ({args.tasks[0]}): trainable backbone '
                  f'{counts.get("trainable.backbone", 0):,} (matrices '
                  f'{counts["trainable_matrices.backbone"]:,}), head '
                  f'{counts.get("trainable.head", 0):,}, total trainable '
                  f'{counts["trainable"]:,} of {counts["total"]:,}')
        return
    os.makedirs(args.work_dir, exist_ok=True)
    if args.dry_run:
        # Tiny models: threads only add overhead (and oversubscribe CPUs).
        torch.set_num_threads(1)
    # Each task tears its process group down: the launcher's rank decides.
    is_main = int(os.environ.get('RANK', 0)) == 0
    if args.dry_run and is_main:
        write_standin_data(configs.values(), standin_root)
    if 'noah' in args.methods:
        noah_stages(args, configs, standin_root, is_main)
    seeds = [None] if args.seeds is None else list(range(args.seeds))
    try:  # plans every run and checks its data before any training
        protocol = Protocol(configs, args.work_dir, search, seeds,
                            args.data_variant, is_main)
    except ValueError as e:  # AnnotationError included
        fail(e)
    grids = protocol.run(args.launcher)
    if is_main:
        rows = summarize(
            load_results(args.work_dir, args.methods, args.tasks),
            args.tasks)
        if costs is not None:
            add_costs(rows, costs)
        stem = osp.join(args.work_dir, 'results')
        paths = write_tables(rows, args.tasks, stem)
        plot_accuracy_vs_parameters(rows, f'{stem}.png')
        paths.append(f'{stem}.png')
        if costs is not None:
            plot_costs({r['method']: r for r in rows},
                       [(c, h, 1.0) for c, h in COST_COLUMNS.items()],
                       f'{stem}_costs.png')
            paths.append(f'{stem}_costs.png')
        print('\n' + terminal_table(
            rows, shutil.get_terminal_size().columns))
        if grids:
            paths += write_search_table(
                grids, osp.join(args.work_dir, 'search'))
        print(f'wrote {", ".join(paths)} (every task and column)')


if __name__ == '__main__':
    main()
