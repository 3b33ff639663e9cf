# Copyright (c) mmpetl contributors. All rights reserved.
"""tools/model_converters/videomae2mmaction.py on a checkpoint in VideoMAE's pre-training
layout, made here from a tiny mmaction2 ViT."""
import copy

import pytest
import torch

from mmpetl.fileio.errors import CheckpointError, OutputError
from mmpetl.model_converters.videomae import convert_videomae_checkpoint
from mmpetl.registry import MODELS
from tests.support.video import TINY_VIDEO_VIT
from tests.support.tools import run_tool, sha256

# mmaction2 name -> VideoMAE name (the inverse of the converter's renames).
TO_VIDEOMAE = (('patch_embed.projection.', 'patch_embed.proj.'),
               ('.mlp.layers.0.0.', '.mlp.fc1.'),
               ('.mlp.layers.1.', '.mlp.fc2.'))


def test_convert_videomae_pretraining_checkpoint(tmp_path):
    torch.manual_seed(0)
    vit = MODELS.build(copy.deepcopy(TINY_VIDEO_VIT))
    with torch.no_grad():
        for param in vit.parameters():
            param.normal_()
    encoder = {}
    for key, value in vit.state_dict().items():
        if key.startswith('fc_norm.') or key == 'pos_embed':
            continue  # not in the pre-trained encoder
        for ours, theirs in TO_VIDEOMAE:
            key = key.replace(ours, theirs)
        encoder[f'encoder.{key}'] = value
    source = tmp_path / 'videomae_pretrain.pth'
    torch.save(
        dict(
            model=dict(
                encoder,
                **{'encoder.norm.weight': torch.ones(32),
                   'encoder.norm.bias': torch.zeros(32),
                   'encoder_to_decoder.weight': torch.ones(16, 32),
                   'decoder.blocks.0.attn.qkv.weight': torch.ones(48, 16),
                   'mask_token': torch.zeros(1, 1, 16)}),
            epoch=799), source)
    before = sha256(source)
    out = tmp_path / 'converted.pth'
    result = run_tool('tools/model_converters/videomae2mmaction.py', str(source), str(out))
    assert 'wrote' in result.stdout and sha256(source) == before

    # The converted file initialises the wrapped backbone exactly.
    model = MODELS.build(
        dict(type='mmpetl.RepAdapterBackbone',
             backbone=dict(TINY_VIDEO_VIT, init_cfg=dict(
                 type='Pretrained', checkpoint=str(out),
                 prefix='backbone.'))))
    loaded = {k: v for k, v in model.backbone.state_dict().items()
              if '.adapter.' not in k}
    expected = vit.state_dict()
    assert set(loaded) == set(expected)
    for key, value in expected.items():
        if not key.startswith('fc_norm.'):  # fresh, as in VideoMAE
            assert torch.equal(loaded[key], value), key

    # Bad input: a clear error, nothing written; the CLI says it in one
    # line with exit status 2.
    not_videomae = tmp_path / 'other.pth'
    torch.save(dict(state_dict=dict(w=torch.ones(1))), not_videomae)
    text_file = tmp_path / 'notes.pth'
    text_file.write_text('not a checkpoint')
    missing = tmp_path / 'missing.pth'
    target = str(tmp_path / 'x.pth')
    for args, message in (((not_videomae, target), 'no VideoMAE encoder'),
                          ((text_file, target), 'not a PyTorch checkpoint'),
                          ((missing, target), 'does not exist'),
                          ((source, out), 'exists; pass --force'),
                          ((source, source), 'is an input')):
        with pytest.raises((CheckpointError, OutputError), match=message):
            convert_videomae_checkpoint(str(args[0]), str(args[1]))
    assert not (tmp_path / 'x.pth').exists() and sha256(source) == before
    result = run_tool('tools/model_converters/videomae2mmaction.py', str(not_videomae), target,
                      expect_ok=False)
    assert result.returncode == 2
    assert result.stderr.strip().count('\n') == 0
    assert 'no VideoMAE encoder' in result.stderr
