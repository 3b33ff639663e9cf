# Copyright (c) mmpetl contributors. All rights reserved.
"""Print the trainable parameters of every foldable method on every backbone
of the attach-site table, at real size (random weights: only the structure
is built, nothing is downloaded). ``-``: the backbone lacks a site kind the
method needs (e.g. LoRA's ``qkv`` where the attention applies ``qkv.weight``
itself; FacT where a linear is no grid of ``d x d`` blocks)."""
import argparse

from mmengine.logging import MMLogger

from mmpetl.engine.hooks import count_parameters
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

#: column -> wrapper config (defaults: the papers').
METHODS = {
    'RepAdapter': dict(type='mmpetl.RepAdapterBackbone'),
    'ARC': dict(type='mmpetl.ARCBackbone'),
    'LoRA': dict(type='mmpetl.LoRABackbone'),
    'DoRA': dict(type='mmpetl.LoRABackbone', dora=True),
    'SSF': dict(type='mmpetl.SSFBackbone'),
    'BitFit': dict(type='mmpetl.BitFitBackbone'),
    'LN-tuning': dict(type='mmpetl.LNTuningBackbone'),
    'FacT-TT r8': dict(type='mmpetl.FacTBackbone', mode='tt'),
    'FacT-TK r32': dict(type='mmpetl.FacTBackbone', mode='tk', rank=32),
}


def trainable_count(method: dict, backbone: dict) -> str:
    try:
        model = MODELS.build(dict(method, backbone=backbone))
    except (KeyError, ValueError):  # a site kind the row lacks, or one
        return '-'  # the method cannot take (FacT on EVA-02's SwiGLU)
    return f'{count_parameters(model)["trainable"]:,}'


def main():
    argparse.ArgumentParser(description=__doc__).parse_args()
    # Quiet the per-parameter init report of every build.
    MMLogger.get_instance('mmengine', log_level='WARNING')
    print('| backbone | stock params | ' + ' | '.join(METHODS) + ' |')
    print('| --- | ---: |' + ' ---: |' * len(METHODS))
    for name, backbone in BACKBONES.items():
        stock = sum(p.numel() for p in MODELS.build(backbone).parameters())
        counts = [trainable_count(m, backbone) for m in METHODS.values()]
        print(f'| {name} | {stock:,} | ' + ' | '.join(counts) + ' |',
              flush=True)


if __name__ == '__main__':
    main()
