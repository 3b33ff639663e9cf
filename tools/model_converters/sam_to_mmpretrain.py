# Copyright (c) mmpetl contributors. All rights reserved.
"""Convert a SAM checkpoint (facebookresearch/segment-anything,
sam_vit_{b,l,h}_*.pth) into an mmpretrain checkpoint (backbone.* keys of
ViTSAM, the image encoder; load with prefix='backbone.').

Key mapping: mmpetl/model_converters/sam.py. The input is never modified;
the output is written atomically and not replaced without --force. Bad
input: one error line, exit status 2."""
from mmpetl.model_converters.files import converter_main
from mmpetl.model_converters.sam import convert_sam


def main():
    converter_main(__doc__, convert_sam)


if __name__ == '__main__':
    main()
