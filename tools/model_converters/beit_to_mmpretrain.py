# Copyright (c) mmpetl contributors. All rights reserved.
"""Convert a BEiT / BEiT v2 checkpoint (microsoft/unilm,
beit_*_pt22k.pth, beitv2_*_pt1k.pth, fine-tuned files too) into an
mmpretrain checkpoint (backbone.* keys of BEiTViT; load with
prefix='backbone.').

Key mapping: mmpetl/model_converters/beit.py. The input is never modified;
the output is written atomically and not replaced without --force. Bad
input: one error line, exit status 2."""
from mmpetl.model_converters.beit import convert_beit
from mmpetl.model_converters.files import converter_main


def add_arguments(parser):
    parser.add_argument('--norm',
                        choices=('ln2', 'ln1'),
                        default='ln2',
                        help="where the file's last norm goes: ln2 (out_type="
                        "'avg_featmap', the default) or ln1 (final_norm=True)")


def main():
    converter_main(__doc__, convert_beit, add_arguments=add_arguments)


if __name__ == '__main__':
    main()
