# Copyright (c) mmpetl contributors. All rights reserved.
"""Train a model of any OpenMMLab 2.x toolbox, with or without mmpetl
adapters. Flags follow mmpretrain's ``tools/train.py``; the registry scope
comes from the config's ``default_scope``."""
import os
import sys

from mmengine.config import DictAction
from mmengine.device import get_device
from mmengine.registry import RUNNERS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint

from mmpetl.apis.config_names import config_arg
from mmpetl.apis.tool_options import (check_checkpoint_matches,
                                      check_run_outputs,
                                      set_dataloader_defaults, set_work_dir)
from mmpetl.engine.distributed import set_model_wrapper
from mmpetl.engine.hooks import add_exact_resume_hook
from mmpetl.engine.hooks.exact_resume_hook import check_resume_state
from mmpetl.fileio.configs import (check_named_checkpoints,
                                   load_config_file, run_input_files)
from mmpetl.fileio.errors import CheckpointError, first_line
from mmpetl.fileio.outputs import protected_inputs
from mmpetl.fileio.safe_load import load_checkpoint_file
from mmpetl.fileio.switches import check_env_flags
from mmpetl.utils import InputError
from mmpetl.utils.arguments import (ToolParser, folder_or_new,
                                    non_negative_int)
from mmpetl.utils.compat import cpu_distributed
from mmpetl.utils.threads import set_thread_defaults


def parse_args():
    parser = ToolParser(description='Train a model')
    parser.add_argument(
        'config', type=config_arg,
        help='train config file path, pkg::path or the name of a shipped config')
    parser.add_argument('--work-dir', type=folder_or_new,
                        help='the dir to save logs and models')
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
    parser.add_argument('--local_rank', '--local-rank', type=non_negative_int,
                        default=0)
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
        if get_device() == 'cpu':  # mmengine's AmpOptimWrapper asserts
            raise CheckpointError('--amp needs a GPU (or an NPU, MLU or '
                                  'MUSA device); none is available here')
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
            raise CheckpointError(f'--auto-scale-lr needs auto_scale_lr in '
                                  f'{args.config}')
        cfg.auto_scale_lr.enable = True
    set_dataloader_defaults(cfg, args.no_pin_memory,
                            args.no_persistent_workers)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    return cfg


#: What a config needs to train.
TRAINING_FIELDS = ('model', 'train_dataloader', 'train_cfg', 'optim_wrapper')


def check_inputs(args):
    """The config with the options applied, and the inputs of the run,
    checked before the Runner and the data are set up, as tools/test.py
    does: the environment switches, the config, the checkpoints it names,
    that no output of the run can replace an input, the model (built
    once), and the checkpoint to resume or load from, against it."""
    check_env_flags()
    cfg = merge_args(load_config_file(args.config), args)
    missing = [field for field in TRAINING_FIELDS if not cfg.get(field)]
    if missing:
        raise CheckpointError(f'config {args.config} cannot train: it has no '
                              f'{", ".join(missing)}')
    check_named_checkpoints(cfg)
    resume_from = None
    if cfg.get('resume'):
        resume_from = cfg.get('load_from') or find_latest_checkpoint(
            cfg.work_dir)
    inputs = run_input_files(args.config, cfg)
    check_run_outputs(cfg, args.config, inputs, trains=True,
                      resume_from=resume_from)
    checkpoint = resume_from or cfg.get('load_from')
    local = checkpoint if checkpoint and '://' not in checkpoint else None
    # Resumed, it must be this model's; loaded, mmengine takes what matches.
    loaded = local and load_checkpoint_file(local)
    if resume_from and loaded:
        check_resume_state(loaded, local)
    check_checkpoint_matches(cfg, loaded, local, strict=bool(resume_from),
                             inputs=inputs)
    add_exact_resume_hook(cfg)
    if args.launcher != 'none':
        set_model_wrapper(cfg)
    return cfg, inputs


def main():
    args = parse_args()
    try:
        cfg, inputs = check_inputs(args)
        set_thread_defaults(cfg)
        with protected_inputs(inputs), cpu_distributed(cfg, args.launcher):
            if 'runner_type' not in cfg:
                runner = Runner.from_cfg(cfg)
            else:
                runner = RUNNERS.build(cfg)
            runner.train()
    except InputError as e:  # unsafe or mismatched checkpoint, bad config
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # e.g. the disk is full
        print(f'error: {first_line(e)}', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
