# Copyright (c) mmpetl contributors. All rights reserved.
"""Convert a VideoMAE checkpoint (MCG-NJU/VideoMAE, pre-trained or
fine-tuned ViT) into an mmaction2 recognizer-layout checkpoint
(``backbone.*`` keys of mmaction2's ``VisionTransformer``).

The input is never modified; the output is written atomically and not
replaced without --force. Bad input: one error line, exit status 2.
Loading unpickles the file: convert only checkpoints you trust."""
import sys

from mmpetl.model_converters.videomae import convert_videomae_checkpoint
from mmpetl.utils import InputError
from mmpetl.utils.arguments import ToolParser, existing_file


def parse_args():
    parser = ToolParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', type=existing_file,
                        help='the VideoMAE checkpoint')
    parser.add_argument('out_checkpoint', help='the checkpoint to write')
    parser.add_argument(
        '--force', action='store_true', help='replace an existing output')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        count = convert_videomae_checkpoint(args.checkpoint,
                                            args.out_checkpoint, args.force)
    except InputError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    print(f'wrote {count} tensors to {args.out_checkpoint}')


if __name__ == '__main__':
    main()
