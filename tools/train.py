# Copyright (c) mmpetl contributors. All rights reserved.
"""Train a model of any OpenMMLab 2.x toolbox, with or without mmpetl
adapters. Flags follow mmpretrain's ``tools/train.py``; the registry scope
comes from the config's ``default_scope``."""
import argparse
import os
import os.path as osp
import sys

from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmpetl.checkpoint_io import CheckpointError, check_checkpoint_path
from mmpetl.compat import cpu_distributed
from mmpetl.hooks import add_exact_resume_hook
from mmpetl.tool_options import set_dataloader_defaults, set_work_dir


def parse_args():
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from this checkpoint, or without a path from the '
        'latest checkpoint in the work directory')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='enable automatic-mixed-precision training')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='do not evaluate checkpoints during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the actual batch size over the '
        "config's auto_scale_lr.base_batch_size")
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='disable pin_memory in the dataloaders')
    parser.add_argument(
        '--no-persistent-workers',
        action='store_true',
        help='disable persistent_workers in the dataloaders')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def merge_args(cfg, args):
    """Merge command-line arguments into the config."""
    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None
    cfg.launcher = args.launcher
    set_work_dir(cfg, args.work_dir, args.config)
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg:
            sys.exit(f'error: --auto-scale-lr needs auto_scale_lr in '
                     f'{args.config}')
        cfg.auto_scale_lr.enable = True
    set_dataloader_defaults(cfg, args.no_pin_memory,
                            args.no_persistent_workers)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main():
    args = parse_args()
    if not osp.isfile(args.config):
        sys.exit(f'error: config {args.config} does not exist')
    cfg = merge_args(Config.fromfile(args.config), args)
    add_exact_resume_hook(cfg)
    try:
        if args.resume not in (None, 'auto'):
            check_checkpoint_path(args.resume)
        with cpu_distributed(cfg, args.launcher):
            if 'runner_type' not in cfg:
                runner = Runner.from_cfg(cfg)
            else:
                runner = RUNNERS.build(cfg)
            runner.train()
    except CheckpointError as e:  # unsafe, mismatched or missing checkpoint
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
