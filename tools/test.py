# Copyright (c) mmpetl contributors. All rights reserved.
"""Evaluate a checkpoint: an adapter checkpoint with its mmpetl config, or a
merged checkpoint with its stock config. The checkpoint is checked against
the config first: any mismatch is one error line and exit status 2."""
import argparse
import json
import os
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.model import is_model_wrapper
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmpetl.checkpoint_io import (CheckpointError, atomic_output,
                                  check_finite, check_output_paths,
                                  load_checkpoint_file,
                                  load_config_file, load_matching_state_dict,
                                  model_state_dict, run_input_files)
from mmpetl.compat import cpu_distributed
from mmpetl.reparam import adapter_wrappers_in_config, is_merged_checkpoint


def parse_args():
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs')
    parser.add_argument(
        '--metrics-out', help='write the metrics to this JSON file')
    parser.add_argument(
        '--force', action='store_true', help='replace --metrics-out if it '
        'exists (never an input)')
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


def check_inputs(args):
    """Validate the config and checkpoint paths and contents cheaply."""
    cfg = load_config_file(args.config)
    check_output_paths([args.metrics_out], args.force,
                       run_input_files(args.config, cfg) + [args.checkpoint],
                       make_folders=True)  # e.g. inside the work dir
    checkpoint = load_checkpoint_file(args.checkpoint)
    check_finite(model_state_dict(checkpoint), f'checkpoint {args.checkpoint}')
    if is_merged_checkpoint(checkpoint) and adapter_wrappers_in_config(cfg):
        raise CheckpointError(
            f'{args.checkpoint} is a merged (stock) checkpoint but '
            f'{args.config} has adapters; test it with the stock config '
            'written by tools/reparam.py --out-config')
    return cfg, checkpoint


def main():
    args = parse_args()
    try:
        cfg, checkpoint = check_inputs(args)
    except CheckpointError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    with cpu_distributed(cfg, args.launcher):
        runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg \
            else RUNNERS.build(cfg)
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        try:
            # The runner loads non-strictly; refuse what would only warn.
            load_matching_state_dict(model, model_state_dict(checkpoint),
                                     args.checkpoint)
        except CheckpointError as e:
            print(f'error: {e}', file=sys.stderr)
            sys.exit(2)
        metrics = runner.test()
    if args.metrics_out and runner.rank == 0:
        with atomic_output(args.metrics_out) as tmp:
            with open(tmp, 'w') as f:
                # mmseg's metrics are NumPy scalars.
                json.dump(metrics, f, indent=2, default=float)


if __name__ == '__main__':
    main()
