# Copyright (c) mmpetl contributors. All rights reserved.
"""Tiny backbones and helpers shared by the tests."""
import copy

import torch

import mmpetl  # noqa: F401  (applies the compat fixes)

TINY_VIT = dict(
    type='mmpretrain.VisionTransformer',
    arch=dict(embed_dims=32, num_layers=2, num_heads=2,
              feedforward_channels=64),
    img_size=32,
    patch_size=8)

# Inputs of 72x72 give 18x18 and 9x9 token maps: both need window padding.
TINY_SWIN = dict(
    type='mmpretrain.SwinTransformer',
    arch=dict(embed_dims=16, depths=[2, 2], num_heads=[2, 2]),
    img_size=72,
    window_size=7,
    out_indices=(0, 1))


def pretrained_cfg(backbone_cfg, path, seed=1, perturb=0.):
    """Build a stock backbone, save it as a 'pre-trained' checkpoint, and
    return the config that loads it. ``perturb`` adds that much Gaussian
    noise to every parameter (e.g. non-zero biases that init leaves zero)."""
    from mmpetl.registry import MODELS
    torch.manual_seed(seed)
    backbone = MODELS.build(copy.deepcopy(backbone_cfg))
    backbone.init_weights()
    if perturb:
        with torch.no_grad():
            for param in backbone.parameters():
                param.add_(perturb * torch.randn_like(param))
    # Laid out as a whole model's checkpoint, which every toolbox's Swin
    # and mmengine's PretrainedInit (with prefix) accept.
    torch.save(
        dict(state_dict={f'backbone.{k}': v
                         for k, v in backbone.state_dict().items()}), path)
    return dict(
        copy.deepcopy(backbone_cfg),
        init_cfg=dict(type='Pretrained', checkpoint=str(path),
                      prefix='backbone.'))


@torch.no_grad()
def randomize_trainable(model, seed=0, std=0.2):
    """Move every trainable tensor of ``model`` off its init: add
    ``N(0, std^2)`` noise to every parameter that requires grad (adapters,
    deltas, prompts, selected stock parameters, a head). Adapters start as
    the identity or as zero (LoRA's ``B``, FacT's ``V``), which would make
    merge and switching tests trivial. Returns ``model``."""
    generator = torch.Generator().manual_seed(seed)
    for param in model.parameters():
        if param.requires_grad:
            param.add_(std * torch.randn(
                param.shape, generator=generator).to(param))
    return model


def _dense_swin(scope):
    # mmseg's and mmdet's Swin (pad inside ShiftWindowMSA, like mmpretrain's).
    return dict(
        type=f'{scope}.SwinTransformer',
        pretrain_img_size=56,
        embed_dims=16,
        depths=(2, 2),
        num_heads=(2, 2),
        strides=(4, 2),
        window_size=7,
        out_indices=(0, 1))


TINY_SEG_SWIN = _dense_swin('mmseg')
TINY_DET_SWIN = _dense_swin('mmdet')
