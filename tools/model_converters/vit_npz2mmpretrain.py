# Copyright (c) mmpetl contributors. All rights reserved.
"""Convert Google's ViT ``.npz`` checkpoint (e.g. ImageNet-21k
``ViT-B_16.npz`` / ``ViT-L_16.npz``) to an mmpretrain checkpoint
(``backbone.*`` keys of ``VisionTransformer``). See ``mmpetl/vit_npz.py``
for the key mapping. Never touches the input; writes atomically; refuses to
replace an existing output without ``--force``. Bad input: one error line,
exit status 2."""
import os.path as osp
import sys
import zipfile

import numpy as np

from mmpetl.fileio.errors import CheckpointError
from mmpetl.fileio.outputs import check_output_path, save_checkpoint
from mmpetl.model_converters.vit_npz import NpzLayoutError, convert_vit_npz
from mmpetl.utils import InputError
from mmpetl.utils.arguments import ToolParser, existing_file


def parse_args():
    parser = ToolParser(description=__doc__.split('\n')[0])
    parser.add_argument('npz', type=existing_file,
                        help="Google's ViT .npz checkpoint")
    parser.add_argument('out', help='output .pth checkpoint')
    parser.add_argument(
        '--with-head',
        action='store_true',
        help='also convert pre_logits/head (VisionTransformerClsHead)')
    parser.add_argument(
        '--force', action='store_true', help='replace an existing output')
    return parser.parse_args()


def main():
    args = parse_args()
    try:
        check_output_path(args.out, args.force, args.npz)
        try:
            arrays = np.load(args.npz, allow_pickle=False)
        except (OSError, ValueError, zipfile.BadZipFile) as e:
            raise CheckpointError(f'{args.npz} is not a .npz file ({e})')
        if not isinstance(arrays, np.lib.npyio.NpzFile):
            raise CheckpointError(f'{args.npz} is not a .npz file (it holds '
                                  'a single array)')
        try:
            state_dict = convert_vit_npz(arrays, with_head=args.with_head)
        except NpzLayoutError as e:
            raise CheckpointError(f'{args.npz}: {e}')
        save_checkpoint(
            dict(state_dict=state_dict,
                 meta=dict(converted_from=osp.basename(args.npz))), args.out)
    except InputError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    layers = sum(k.endswith('.ln1.weight') for k in state_dict) - 1
    params = sum(v.numel() for v in state_dict.values())
    print(f'{args.out}: {len(state_dict)} tensors, {params:,} parameters, '
          f'{layers} layers, width '
          f'{state_dict["backbone.cls_token"].shape[-1]}')


if __name__ == '__main__':
    main()
