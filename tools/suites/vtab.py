# Copyright (c) mmpetl contributors. All rights reserved.
"""Run methods over the VTAB-1k tasks (or any suite of per-task configs)
and write one results table.

    python tools/suites/vtab.py --methods repadapter arc lora [--tasks cifar dtd]
    torchrun --nproc_per_node 8 tools/suites/vtab.py --launcher pytorch --methods arc
    python tools/suites/vtab.py --methods repadapter --dry-run

Each method/task runs ``{config_dir}/{method}/{prefix}_{method}_{task}.py``
with MMEngine's Runner, in ``{work_dir}/{method}/{task}``; finished tasks
(``result.json``) are skipped and interrupted ones resume from their last
checkpoint. Then ``{work_dir}/results.{md,csv}`` (per task, group means,
mean of group means, flat mean) and ``results.png`` (accuracy against
trainable parameters) are rewritten from every finished task.

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

``--dry-run`` builds every config and trains a few iterations (8 samples
per split, one epoch) on stand-in data in the VTAB-1k / few-shot layouts
(real scikit-learn digits) with a tiny backbone of the same type and no
weights; the tests use it. ``--count-params`` builds each method at its
real size and prints its trainable parameters.
"""
import argparse
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config, DictAction

from mmpetl.datasets import VTAB1K_TASKS
from mmpetl.fileio.checkpoint_io import load_config_file
from mmpetl.suites.protocol import Protocol, parse_search, write_search_table
from mmpetl.suites.task_suite import (count_trainable, load_results,
                                      plot_accuracy_vs_parameters,
                                      replace_backbone, shrink_for_dry_run,
                                      summarize, write_standin_data,
                                      write_tables)
from mmpetl.utils import InputError

METHODS = ('repadapter', 'arc', 'lora', 'linear-probe', 'full-finetune')


def parse_args():
    parser = argparse.ArgumentParser(description='Run methods over tasks')
    parser.add_argument('--methods', nargs='+', default=list(METHODS[:2]),
                        help=f'method folders of --config-dir, e.g. '
                        f'{" ".join(METHODS)}')
    parser.add_argument('--tasks', nargs='+', default=list(VTAB1K_TASKS),
                        help='tasks (default: the 19 VTAB-1k tasks)')
    parser.add_argument('--config-dir', default='configs/vtab')
    parser.add_argument('--prefix', default='vit-b16',
                        help='config names are {prefix}_{method}_{task}.py')
    parser.add_argument('--work-dir', default='work_dirs/vtab')
    parser.add_argument('--data-root', help='replace the configs\' '
                        'data_root (e.g. the VTAB-1k folder)')
    parser.add_argument(
        '--backbone',
        help='a backbone base (configs/vtab/_base_/backbones/vit-l16.py, '
        'swin-b.py) to run every method on instead of the configs\' own')
    parser.add_argument('--dry-run', action='store_true',
                        help='tiny backbone, tiny stand-in data, 2 '
                        'iterations per config')
    parser.add_argument('--count-params', action='store_true',
                        help='only build each method (first task, real '
                        'size, no weights) and print trainable parameters')
    parser.add_argument(
        '--search', nargs='+', metavar='KEY=V1,V2',
        help='grid searched on the validation split per task: scale, lr, '
        'wd or a dotted config key (e.g. scale=0.1,0.5,1,5,10 lr=1e-3,5e-3)')
    parser.add_argument('--seeds', type=int, metavar='N',
                        help='final runs with seeds 0..N-1 (mean ± std); '
                        'default: one run with the config\'s seed')
    parser.add_argument(
        '--data-variant', metavar='NAME',
        help='run on data other than the benchmark\'s (counts not '
        'enforced); NAME is recorded next to each result')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of every config')
    parser.add_argument('--launcher', default='none',
                        choices=['none', 'pytorch', 'slurm', 'mpi'])
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if args.seeds is not None and args.seeds < 1:
        parser.error('--seeds must be at least 1')
    if args.dry_run and args.data_variant is None:
        args.data_variant = 'standin'
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def task_config(args, method: str, task: str, standin_root: str) -> Config:
    path = osp.join(args.config_dir, method,
                    f'{args.prefix}_{method}_{task}.py')
    cfg = load_config_file(path)
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


def fail(error: Exception) -> None:
    print(f'error: {str(error).strip(chr(39))}', file=sys.stderr)
    sys.exit(2)


def main():
    args = parse_args()
    standin_root = osp.join(args.work_dir, 'standin_data')
    try:
        search = parse_search(args.search)
        # Every config first: a typo fails now, not after hours of training.
        configs = {(m, t): task_config(args, m, t, standin_root)
                   for m in args.methods for t in args.tasks}
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
        stem = osp.join(args.work_dir, 'results')
        paths = write_tables(rows, args.tasks, stem)
        plot_accuracy_vs_parameters(rows, f'{stem}.png')
        print(open(paths[0]).read())
        if grids:
            paths += write_search_table(
                grids, osp.join(args.work_dir, 'search'))
        print(f'wrote {", ".join(paths)}, {stem}.png')


if __name__ == '__main__':
    main()
