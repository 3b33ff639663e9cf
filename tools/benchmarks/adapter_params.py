# Copyright (c) mmpetl contributors. All rights reserved.
"""Print adapter sites and parameter counts of RepAdapter and ARC on every
backbone of the attach-site table, at real size (random weights: only the
structure is built, nothing is downloaded)."""
import argparse

from mmengine.logging import MMLogger

from mmpetl.hooks import count_parameters
from mmpetl.registry import MODELS

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

METHODS = ('RepAdapterBackbone', 'ARCBackbone')


def main():
    argparse.ArgumentParser(description=__doc__).parse_args()
    # Quiet the per-parameter init report of every build.
    MMLogger.get_instance('mmengine', log_level='WARNING')
    print('| backbone | sites | stock params | RepAdapter | ARC |')
    print('| --- | --- | ---: | ---: | ---: |')
    for name in BACKBONES:
        counts, sites = [], ''
        for method in METHODS:
            model = MODELS.build(
                dict(type=f'mmpetl.{method}', backbone=BACKBONES[name]))
            count = count_parameters(model)
            counts.append(count['trainable'])
            stock = count['total'] - count['trainable']
            kinds = [s.kind for s in model.attach_sites]
            sites = ', '.join(f'{kinds.count(k)} {k}'
                              for k in dict.fromkeys(kinds))
        print(f'| {name} | {sites} | {stock:,} | {counts[0]:,} | '
              f'{counts[1]:,} |', flush=True)


if __name__ == '__main__':
    main()
