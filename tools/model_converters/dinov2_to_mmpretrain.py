# Copyright (c) mmpetl contributors. All rights reserved.
"""Convert a DINOv2 checkpoint (facebookresearch/dinov2,
dinov2_vit{s,b,l,g}14_pretrain.pth) into an mmpretrain checkpoint
(backbone.* keys of VisionTransformer; load with prefix='backbone.').

Key mapping: mmpetl/model_converters/dinov2.py. The input is never
modified; the output is written atomically and not replaced without
--force. Bad input: one error line, exit status 2. Loading unpickles the
file with the safe policy of the other tools."""
from mmpetl.model_converters.dinov2 import convert_dinov2
from mmpetl.model_converters.files import converter_main


def main():
    converter_main(__doc__, convert_dinov2)


if __name__ == '__main__':
    main()
