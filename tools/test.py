# Copyright (c) mmpetl contributors. All rights reserved.
"""Evaluate a checkpoint: an adapter checkpoint with its mmpetl config, or a
merged checkpoint with its stock config. Flags follow mmpretrain's
``tools/test.py``. The config, the checkpoint and the options are checked
first, then the checkpoint against the config's model, before the runner
and the data are set up: any problem is one error line and exit status 2."""
import argparse
import os
import sys

from mmengine.config import DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

from mmpetl.apis.config_names import find_config
from mmpetl.apis.reparam import (adapter_wrappers_in_config,
                                 is_merged_checkpoint)
from mmpetl.apis.tool_options import (check_checkpoint_matches,
                                      check_out_path, check_run_outputs,
                                      dump_predictions, enable_test_amp,
                                      enable_tta, enable_visualization,
                                      set_dataloader_defaults, set_work_dir,
                                      write_metrics)
from mmpetl.fileio.checkpoint_io import (CheckpointError, check_env_flags,
                                         check_finite, check_output_paths,
                                         load_checkpoint_file,
                                         load_config_file, model_state_dict,
                                         protected_inputs, run_input_files)
from mmpetl.utils import InputError
from mmpetl.utils.compat import cpu_distributed
from mmpetl.utils.threads import set_thread_defaults


def parse_args():
    parser = argparse.ArgumentParser(description='Test a checkpoint')
    parser.add_argument(
        'config', help='test config file path, pkg::path or the name of a '
        'shipped config')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save logs')
    parser.add_argument(
        '--out',
        help='write the predictions (.pkl) or, with --out-item metrics, the '
        'metrics (.json, .yaml, .pkl) to this file')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out holds; defaults to the predictions')
    parser.add_argument(
        '--metrics-out', help='write the metrics to this JSON file')
    parser.add_argument(
        '--force', action='store_true', help='replace --metrics-out / --out if '
        'they exist (never an input)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='test with automatic mixed precision')
    parser.add_argument(
        '--show-dir',
        help='save the visualized predictions in this directory (under the '
        "run's work_dir/<timestamp> when relative)")
    parser.add_argument(
        '--show',
        action='store_true',
        help='show the predictions in a window')
    parser.add_argument(
        '--interval',
        type=int,
        default=1,
        help='visualize every N-th sample')
    parser.add_argument(
        '--wait-time',
        type=float,
        default=2,
        help='seconds each --show window stays open')
    parser.add_argument(
        '--no-pin-memory',
        action='store_true',
        help='disable pin_memory in the test dataloader')
    parser.add_argument(
        '--tta',
        action='store_true',
        help="test-time augmentation: the config's tta_model and "
        'tta_pipeline; mmpretrain configs without them average the scores '
        'of the image and its horizontal flip')
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
    """The config with the options applied, the checkpoint and the inputs
    of the run, checked cheaply: the environment switches, the outputs
    (against every input of the run as the options make it), the
    checkpoint's contents."""
    check_env_flags()
    check_out_path(args.out, args.out_item)
    cfg = merge_args(load_config_file(args.config), args)
    inputs = run_input_files(args.config, cfg) + [args.checkpoint]
    check_output_paths([args.metrics_out, args.out], args.force, inputs,
                       make_folders=True)  # e.g. inside the work dir
    check_run_outputs(cfg, args.config, inputs, trains=False)
    checkpoint = load_checkpoint_file(args.checkpoint)
    check_finite(model_state_dict(checkpoint), f'checkpoint {args.checkpoint}')
    if is_merged_checkpoint(checkpoint) and adapter_wrappers_in_config(cfg):
        raise CheckpointError(
            f'{args.checkpoint} is a merged (stock) checkpoint but '
            f'{args.config} has adapters; test it with the stock config '
            'written by tools/reparam.py --out-config')
    return cfg, checkpoint, inputs


def merge_args(cfg, args):
    """Merge command-line arguments into the config."""
    cfg.launcher = args.launcher
    cfg.load_from = args.checkpoint
    set_work_dir(cfg, args.work_dir, args.config)
    if args.amp:
        enable_test_amp(cfg)
    if args.show or args.show_dir is not None:
        enable_visualization(cfg, args.show, args.show_dir, args.interval,
                             args.wait_time)
    if args.tta:
        enable_tta(cfg)
    set_dataloader_defaults(
        cfg, no_pin_memory=args.no_pin_memory, fields=['test_dataloader'])
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


def main():
    args = parse_args()
    try:
        args.config = find_config(args.config)  # a file, pkg::path, a name
        cfg, checkpoint, inputs = check_inputs(args)
        set_thread_defaults(cfg, fields=['test_dataloader'])
        check_checkpoint_matches(cfg, checkpoint, args.checkpoint)
        with protected_inputs(inputs), cpu_distributed(cfg, args.launcher):
            runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg \
                else RUNNERS.build(cfg)
            with dump_predictions(
                    runner, args.out if args.out_item != 'metrics' else None):
                metrics = runner.test()
            if runner.rank == 0 and args.metrics_out:
                write_metrics(metrics, args.metrics_out, file_format='json')
            if runner.rank == 0 and args.out and args.out_item == 'metrics':
                write_metrics(metrics, args.out)
    except InputError as e:  # unsafe or mismatched checkpoint, bad config
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
