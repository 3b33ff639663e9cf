# Copyright (c) mmpetl contributors. All rights reserved.
"""The authors' own checkpoints of the EVA-02, DINOv2, SAM and BEiT rows
(tests/support/published_upstream.py), converted by the command
docs/en/pretrained.md gives, load into the row's mmpretrain backbone with
every frozen tensor from the file, each on the right tensor; unconverted,
they are refused in one line naming that converter."""
import copy
import importlib.util
import os
import os.path as osp
import sys

import mmpretrain
import pytest
import torch

from mmpetl.model_converters.beit import convert_beit
from mmpetl.model_converters.dinov2 import convert_dinov2
from mmpetl.model_converters.files import convert_file
from mmpetl.model_converters.sam import convert_sam
from mmpetl.models import PretrainedLoadError
from mmpetl.registry import MODELS
from tests.support.published_upstream import (TINY_UPSTREAM, beit_pretrain,
                                              dinov2_pretrain, eva02_pretrain,
                                              sam_original)
from tests.support.rows import BACKBONES
from tests.support.tools import ROOT, run_tool
from tests.test_pretrained_load import _build, _pretrained

SAM_TOOL = 'tools/model_converters/sam_to_mmpretrain.py'
EVA02_TOOL = osp.join(osp.dirname(mmpretrain.__file__),
                      '.mim/tools/model_converters/eva02_to_mmpretrain.py')


def _script(path):
    """A tool's file, imported as a module."""
    spec = importlib.util.spec_from_file_location(
        osp.splitext(osp.basename(path))[0], path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _convert_eva02(path, out):
    """mmpretrain's own converter, as its command line runs it (it reads
    the ``module`` nesting and saves the converted dict as it is)."""
    tool = _script(EVA02_TOOL)
    torch.save(tool.convert_eva02(torch.load(path)['module']), out)


def _tool(convert):
    return lambda path, out: convert_file(str(path), str(out), convert)


def _eva02_qkv(state, i):
    q_bias, v_bias = (state[f'blocks.{i}.attn.{b}_bias'] for b in 'qv')
    return torch.cat([
        state[f'blocks.{i}.attn.{p}_proj.weight'] for p in 'qkv'
    ]), torch.cat([q_bias, torch.zeros_like(q_bias), v_bias])


def _eva02_expected(state):
    qkv, bias = _eva02_qkv(state, 1)
    return {
        'layers.1.attn.qkv.weight':
        qkv,
        'layers.1.attn.qkv.bias':
        bias,
        'layers.0.mlp.w12.weight':
        torch.cat(
            [state['blocks.0.mlp.w1.weight'],
             state['blocks.0.mlp.w2.weight']]),
        'layers.1.mlp.w3.weight':
        state['blocks.1.mlp.w3.weight'],
        'layers.1.mlp.norm.weight':
        state['blocks.1.mlp.ffn_ln.weight'],
        'pos_embed':
        state['pos_embed'],
    }


def _dinov2_expected(state):
    return {
        'layers.1.attn.qkv.weight': state['blocks.1.attn.qkv.weight'],
        'layers.0.attn.gamma1.weight': state['blocks.0.ls1.gamma'],
        'layers.1.ffn.gamma2.weight': state['blocks.1.ls2.gamma'],
        'layers.0.ffn.w12.weight': state['blocks.0.mlp.w12.weight'],
        'ln1.weight': state['norm.weight'],
    }


def _sam_expected(state):
    enc = 'image_encoder.'
    return {
        'layers.1.attn.qkv.weight': state[enc + 'blocks.1.attn.qkv.weight'],
        'layers.1.attn.rel_pos_h': state[enc + 'blocks.1.attn.rel_pos_h'],
        'layers.0.attn.rel_pos_w': state[enc + 'blocks.0.attn.rel_pos_w'],
        'layers.0.ffn.layers.1.weight':
        state[enc + 'blocks.0.mlp.lin2.weight'],
        'channel_reduction.2.weight': state[enc + 'neck.2.weight'],
        'pos_embed': state[enc + 'pos_embed'],
    }


def _beit_expected(state):
    table = 'rel_pos_bias.relative_position_bias_table'
    return {
        'layers.1.attn.qkv.weight': state['blocks.1.attn.qkv.weight'],
        'layers.1.attn.v_bias': state['blocks.1.attn.v_bias'],
        'layers.0.gamma_1': state['blocks.0.gamma_1'],
        'layers.1.gamma_2': state['blocks.1.gamma_2'],
        'layers.0.attn.relative_position_bias_table': state[table],
        'layers.1.attn.relative_position_bias_table': state[table],
        'ln2.weight': state['norm.weight'],
    }


# As mmpretrain's EVA-02 configs: its converter drops the pre-training
# norm, the pooled tokens get a new ln2 (trained like the head).
_EVA02 = dict(copy.deepcopy(BACKBONES['eva02'][0]),
              sub_ln=True,
              final_norm=False,
              out_type='avg_featmap')
_DINOV2 = copy.deepcopy(BACKBONES['dinov2'][0])
_DINOV2['arch'] = dict(_DINOV2['arch'], feedforward_channels=48)

#: name -> (writer, its tiny sizes and options, the row's backbone config,
#: converter (path, out), expected backbone tensors, tool named on refusal,
#: new layers)
CASES = {
    'eva02':
    (eva02_pretrain, TINY_UPSTREAM['eva02'], _EVA02, _convert_eva02,
     _eva02_expected, 'eva02_to_mmpretrain.py', {'ln2.weight', 'ln2.bias'}),
    'dinov2': (dinov2_pretrain, TINY_UPSTREAM['dinov2'], _DINOV2,
               _tool(convert_dinov2), _dinov2_expected,
               'tools/model_converters/dinov2_to_mmpretrain.py', set()),
    'sam': (sam_original, TINY_UPSTREAM['sam'], BACKBONES['sam'][0],
            _tool(convert_sam), _sam_expected,
            'tools/model_converters/sam_to_mmpretrain.py', set()),
    'beit': (beit_pretrain, TINY_UPSTREAM['beit'], BACKBONES['beit'][0],
             _tool(convert_beit), _beit_expected,
             'tools/model_converters/beit_to_mmpretrain.py', set()),
    'beit_v2':
    (beit_pretrain, dict(TINY_UPSTREAM['beit'],
                         version=2), BACKBONES['beit'][0], _tool(convert_beit),
     _beit_expected, 'tools/model_converters/beit_to_mmpretrain.py', set()),
}


@pytest.mark.parametrize('name', list(CASES))
def test_upstream_file_converts_and_loads_by_value(tmp_path, name):
    write, sizes, backbone, convert, expected, tool, new = CASES[name]
    path, out = tmp_path / f'{name}.pth', tmp_path / f'{name}_mmpretrain.pth'
    state = write(str(path), **sizes)
    convert(path, out)
    model = _build(_pretrained(backbone, out, prefix='backbone.'),
                   dict(type='mmpetl.LoRABackbone'))
    loaded = model.backbone.state_dict()
    # Every frozen tensor came from the file (else the build refuses), and
    # the converted tensors sit where they belong: a wrong order or a
    # swapped tensor differs by value.
    for key, value in expected(state).items():
        wrapped = key.replace('attn.qkv.', 'attn.qkv.linear.')  # LoRA's
        stock = wrapped if wrapped in loaded else key
        assert torch.equal(loaded[stock], value), key
    assert set(model.trained_new_layers()) == new
    # The file as released is refused in one line that names the converter.
    with pytest.raises(PretrainedLoadError) as error:
        _build(_pretrained(backbone, path, prefix='backbone.'))
    message = str(error.value)
    assert '\n' not in message and tool in message, message


def test_converter_tool_writes_the_converted_file(tmp_path, monkeypatch,
                                                  capsys):
    # The command line once (a subprocess): the library's result; then, in
    # this process, one error line and exit 2 for a file of another layout,
    # nothing written.
    path, out = tmp_path / 'sam.pth', tmp_path / 'sam_mmpretrain.pth'
    state = sam_original(str(path), **TINY_UPSTREAM['sam'])
    run_tool(SAM_TOOL, str(path), str(out))
    written = torch.load(out)['state_dict']
    assert written.keys() == convert_sam(state).keys()
    assert torch.equal(written['backbone.layers.1.attn.qkv.weight'],
                       state['image_encoder.blocks.1.attn.qkv.weight'])
    beit, bad = tmp_path / 'beit.pth', tmp_path / 'x.pth'
    beit_pretrain(str(beit), **TINY_UPSTREAM['beit'])
    tool = _script(osp.join(ROOT, SAM_TOOL))
    monkeypatch.setattr(sys, 'argv', [SAM_TOOL, str(beit), str(bad)])
    with pytest.raises(SystemExit) as exit_:
        tool.main()
    errors = capsys.readouterr().err.splitlines()
    assert exit_.value.code == 2 and len(errors) == 1, errors
    assert errors[0].startswith('error: ') and 'not a SAM checkpoint' in \
        errors[0]
    assert not bad.exists()


#: The configs docs/en/pretrained.md gives for the published files (the
#: writers' defaults: EVA-02-B/14, DINOv2 ViT-g/14, SAM ViT-H, BEiT-B/16).
PUBLISHED = {
    'eva02':
    dict(type='mmpretrain.ViTEVA02',
         arch='b',
         img_size=224,
         patch_size=14,
         sub_ln=True,
         final_norm=False,
         out_type='avg_featmap'),
    'dinov2':
    dict(type='mmpretrain.VisionTransformer',
         arch='dinov2-giant',
         img_size=518,
         patch_size=14,
         layer_scale_init_value=1e-5,
         layer_cfgs=dict(ffn_type='swiglu_fused')),
    'sam':
    dict(type='mmpretrain.ViTSAM',
         arch='huge',
         img_size=1024,
         patch_size=16,
         out_channels=256,
         window_size=14),
    'beit':
    dict(type='mmpretrain.BEiTViT',
         arch='base',
         img_size=224,
         patch_size=16,
         out_type='avg_featmap'),
}


def test_published_sizes_convert_to_the_documented_configs(monkeypatch):
    # At the published sizes, every tensor of the converted file has a
    # tensor of that name and shape in the documented config's backbone,
    # and only the new layers lack one. Shapes only: the tensors live on
    # the meta device and nothing is written.
    from tests.support import published
    monkeypatch.setattr(
        published._Random,
        '__call__',
        lambda self, *shape, norm=False: torch.empty(shape, device='meta'))
    monkeypatch.setattr(torch, 'save', lambda *args, **kwargs: None)
    converters = dict(eva02=_script(EVA02_TOOL).convert_eva02,
                      dinov2=convert_dinov2,
                      sam=convert_sam,
                      beit=convert_beit)
    for name, cfg in PUBLISHED.items():
        write, new = CASES[name][0], CASES[name][-1]
        converted = {
            k[len('backbone.'):]: tuple(v.shape)
            for k, v in converters[name](write(os.devnull)).items()
        }
        with torch.device('meta'):
            backbone = MODELS.build(cfg)
        shapes = {k: tuple(v.shape) for k, v in backbone.state_dict().items()}
        assert converted == {
            k: s
            for k, s in shapes.items() if k not in new
        }, name
