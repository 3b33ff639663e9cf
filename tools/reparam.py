# Copyright (c) mmpetl contributors. All rights reserved.
"""Fold the adapters of a checkpoint into the frozen weights and write a
checkpoint (and with --out-config, a config) for the stock OpenMMLab model.

Inputs are never modified; outputs are written atomically and not replaced
without --force. Bad input: one error line, exit status 2. The log of
building the model (per-parameter init records) goes to --log-file, not the
console."""
import argparse
import sys

from mmengine.config import DictAction

from mmpetl.apis.config_names import find_config
from mmpetl.apis.reparam import reparameterize_checkpoint
from mmpetl.utils import InputError
from mmpetl.utils.log_utils import log_to_file, temporary_log_file


def parse_args():
    parser = argparse.ArgumentParser(
        description='Merge adapters into a stock checkpoint')
    parser.add_argument(
        'config',
        help='the adapter config: a file, pkg::path or a shipped name')
    parser.add_argument('checkpoint', help='the adapter checkpoint')
    parser.add_argument('out_checkpoint', help='the stock checkpoint to write')
    parser.add_argument(
        '--out-config', help='also write the stock config here')
    parser.add_argument(
        '--verify',
        action='store_true',
        help='check on a random batch that merged and adapter backbones '
        'agree within --tolerance (relative)')
    parser.add_argument('--tolerance', type=float, default=1e-5)
    parser.add_argument(
        '--verify-shape',
        type=int,
        nargs='+',
        help='input shape for --verify without the batch, e.g. 3 224 224')
    parser.add_argument(
        '--force', action='store_true', help='replace existing outputs')
    parser.add_argument(
        '--log-file',
        help='where the log goes (default: a new file in the temporary '
        'directory)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override settings of the config, as key=value pairs')
    return parser.parse_args()


def main():
    args = parse_args()
    log_file = args.log_file or temporary_log_file('mmpetl_reparam_')
    try:
        args.config = find_config(args.config)  # a file, pkg::path, a name
        with log_to_file(log_file):
            report = reparameterize_checkpoint(
                args.config,
                args.checkpoint,
                args.out_checkpoint,
                out_config=args.out_config,
                verify=args.verify,
                force=args.force,
                cfg_options=args.cfg_options,
                verify_shape=args.verify_shape,
                tolerance=args.tolerance)
    except InputError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    tuned = (f' (+{report["selected"]} tuned stock tensors)'
             if report['selected'] else '')
    print(f'merged {report["adapters"]} adapters{tuned}; stock model has '
          f'{report["params"]:,} parameters; wrote {args.out_checkpoint}' +
          (f' and {args.out_config}' if args.out_config else ''))
    if 'max_rel_diff' in report:
        print(f'verified: max relative difference '
              f'{report["max_rel_diff"]:.3g} <= {args.tolerance:g}')
    print(f'log: {log_file}')


if __name__ == '__main__':
    main()
