# Copyright (c) mmpetl contributors. All rights reserved.
"""Print the trainable parameters of every method
(:data:`mmpetl.benchmarks.methods.METHODS`, at the papers' defaults) on every
backbone of the attach-site table, at real size (random weights: only the
structure is built, nothing is downloaded). ``-``: the wrapper refuses the
backbone, where the method is undefined on its computation (FacT where a
linear is no grid of ``d x d`` blocks; Mona off the Swin families; VPT and
Convpass on windowed attention; LoRand where no module ends each residual
branch): docs/en/backbones.md gives each reason."""

from mmengine.logging import MMLogger

from mmpetl.benchmarks.methods import METHODS
from mmpetl.engine.hooks import count_parameters
from mmpetl.registry import MODELS
from mmpetl.utils.arguments import ToolParser

#: name -> stock backbone config at a real size.
BACKBONES = {
    'ViT-B/16 (mmpretrain)': dict(type='mmpretrain.VisionTransformer',
                                  arch='b'),
    'DeiT3-B': dict(type='mmpretrain.DeiT3', arch='b'),
    'BEiT-B / BEiT v2-B': dict(type='mmpretrain.BEiTViT', arch='base'),
    'EVA-02-B': dict(type='mmpretrain.ViTEVA02', arch='b', img_size=224),
    'Swin-B (mmpretrain)': dict(type='mmpretrain.SwinTransformer', arch='b'),
    'SwinV2-B': dict(type='mmpretrain.SwinTransformerV2', arch='b'),
    'SAM ViT-B': dict(type='mmpretrain.ViTSAM', arch='b', img_size=1024),
    'ConvNeXt-B': dict(type='mmpretrain.ConvNeXt', arch='base'),
    'ViT-B/16 (mmseg)': dict(type='mmseg.VisionTransformer'),
    'Swin-B (mmseg)': dict(type='mmseg.SwinTransformer', embed_dims=128,
                           depths=(2, 2, 18, 2), num_heads=(4, 8, 16, 32)),
    'VideoMAE ViT-B': dict(type='mmaction.VisionTransformer'),
    'Video Swin-B': dict(type='mmaction.SwinTransformer3D', arch='base',
                         pretrained2d=False),
}

def trainable_count(method: dict, backbone: dict) -> str:
    try:
        model = MODELS.build(dict(method, backbone=backbone))
    except (KeyError, ValueError):  # a site kind the row lacks, or one
        return '-'  # the method cannot take (FacT on EVA-02's SwiGLU)
    return f'{count_parameters(model)["trainable"]:,}'


def main():
    parser = ToolParser(description=__doc__)
    parser.add_argument('--backbones', nargs='+', choices=list(BACKBONES),
                        default=list(BACKBONES), help='rows (default: all)')
    parser.add_argument('--methods', nargs='+', choices=list(METHODS),
                        default=list(METHODS), help='columns (default: all)')
    args = parser.parse_args()
    # Quiet the per-parameter init report of every build.
    MMLogger.get_instance('mmengine', log_level='WARNING')
    print('| backbone | stock params | ' + ' | '.join(args.methods) + ' |')
    print('| --- | ---: |' + ' ---: |' * len(args.methods))
    for name in args.backbones:
        backbone = BACKBONES[name]
        stock = sum(p.numel() for p in MODELS.build(backbone).parameters())
        counts = [trainable_count(METHODS[m], backbone)
                  for m in args.methods]
        print(f'| {name} | {stock:,} | ' + ' | '.join(counts) + ' |',
              flush=True)


if __name__ == '__main__':
    main()
