# Copyright (c) mmpetl contributors. All rights reserved.
"""The file side shared by the converters of the authors' layouts
(:mod:`.dinov2`, :mod:`.sam`, :mod:`.beit`) and their tools: read the
checkpoint with the safe loading policy, find its state dict, convert,
write ``{'meta', 'state_dict'}`` of ``backbone.*`` keys atomically."""
import argparse
import os.path as osp
import sys
from typing import Callable, Dict, Optional

import torch

from ..fileio.errors import CheckpointError
from ..fileio.outputs import check_output_path, save_checkpoint
from ..fileio.safe_load import load_checkpoint_dict
from ..utils import InputError
from ..utils.arguments import ToolParser, existing_file

Converter = Callable[[Dict[str, torch.Tensor]], Dict[str, torch.Tensor]]


def state_dict_of(checkpoint: dict) -> Dict[str, torch.Tensor]:
    """The tensors of ``checkpoint`` under its ``model`` / ``module`` /
    ``state_dict`` nesting, or at its top level."""
    for key in ('model', 'module', 'state_dict'):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return checkpoint


def convert_file(path: str,
                 out: str,
                 convert: Converter,
                 force: bool = False) -> int:
    """Convert the checkpoint ``path`` with ``convert`` into ``out``.
    Returns the number of tensors written.

    Raises:
        CheckpointError: For unusable input (``convert``'s ``ValueError``
            included); nothing is written then.
    """
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint {path} does not exist')
    check_output_path(out, force, path)
    try:
        state_dict = convert(state_dict_of(load_checkpoint_dict(path)))
    except ValueError as e:
        raise CheckpointError(f'{path}: {e}') from e
    save_checkpoint(
        dict(meta=dict(converted_from=osp.basename(path)),
             state_dict=state_dict), out)
    return len(state_dict)


def converter_main(doc: str,
                   convert: Converter,
                   add_arguments: Optional[Callable] = None) -> None:
    """The command line of a converter tool: ``checkpoint out [--force]``
    (and the options ``add_arguments(parser)`` adds, given to ``convert``
    as keyword arguments); one error line and exit status 2 on bad
    input."""
    summary, _, details = doc.partition('\n\n')
    parser = ToolParser(description=' '.join(summary.split()),
                        formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=details.strip())
    parser.add_argument('checkpoint',
                        type=existing_file,
                        help='the checkpoint as its authors released it')
    parser.add_argument('out', help='the mmpretrain checkpoint to write')
    parser.add_argument('--force',
                        action='store_true',
                        help='replace an existing output')
    if add_arguments:
        add_arguments(parser)
    args = vars(parser.parse_args())
    checkpoint, out, force = (args.pop(k)
                              for k in ('checkpoint', 'out', 'force'))
    try:
        count = convert_file(checkpoint, out,
                             lambda state: convert(state, **args), force)
    except InputError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    print(f'wrote {count} tensors to {out}')
