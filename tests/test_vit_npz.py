# Copyright (c) mmpetl contributors. All rights reserved.
"""Google ViT .npz -> mmpretrain: the converted model computes what the
Google layout defines, checked against a forward written from the arrays."""
import os.path as osp
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models import VisionTransformer

from mmpetl.model_converters.vit_npz import NpzLayoutError, convert_vit_npz

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DIMS, HEADS, MLP, PATCH, LAYERS, IMG, CLASSES = 24, 3, 40, 4, 2, 12, 7


def google_arrays(seed=0, pre_logits=True):
    """Random arrays in Google's vit_jax key layout and shapes."""
    rng = np.random.default_rng(seed)

    def rand(*shape):
        return rng.normal(0, 0.3, shape).astype(np.float32)

    tokens = (IMG // PATCH)**2 + 1
    head_dim = DIMS // HEADS
    arrays = {
        'embedding/kernel': rand(PATCH, PATCH, 3, DIMS),
        'embedding/bias': rand(DIMS),
        'cls': rand(1, 1, DIMS),
        'Transformer/posembed_input/pos_embedding': rand(1, tokens, DIMS),
        'Transformer/encoder_norm/scale': 1 + rand(DIMS),
        'Transformer/encoder_norm/bias': rand(DIMS),
        'head/kernel': rand(DIMS, CLASSES),
        'head/bias': rand(CLASSES),
    }
    if pre_logits:
        arrays['pre_logits/kernel'] = rand(DIMS, DIMS)
        arrays['pre_logits/bias'] = rand(DIMS)
    for i in range(LAYERS):
        block = f'Transformer/encoderblock_{i}'
        attn = f'{block}/MultiHeadDotProductAttention_1'
        for norm in ('LayerNorm_0', 'LayerNorm_2'):
            arrays[f'{block}/{norm}/scale'] = 1 + rand(DIMS)
            arrays[f'{block}/{norm}/bias'] = rand(DIMS)
        for proj in ('query', 'key', 'value'):
            arrays[f'{attn}/{proj}/kernel'] = rand(DIMS, HEADS, head_dim)
            arrays[f'{attn}/{proj}/bias'] = rand(HEADS, head_dim)
        arrays[f'{attn}/out/kernel'] = rand(HEADS, head_dim, DIMS)
        arrays[f'{attn}/out/bias'] = rand(DIMS)
        arrays[f'{block}/MlpBlock_3/Dense_0/kernel'] = rand(DIMS, MLP)
        arrays[f'{block}/MlpBlock_3/Dense_0/bias'] = rand(MLP)
        arrays[f'{block}/MlpBlock_3/Dense_1/kernel'] = rand(MLP, DIMS)
        arrays[f'{block}/MlpBlock_3/Dense_1/bias'] = rand(DIMS)
    return arrays


def reference_forward(a, images):
    """ViT as the Google layout defines it (NHWC, einsum over the stored
    kernel shapes), in float64; returns the pre-logits (cls) features."""
    t = {k: torch.from_numpy(v).double() for k, v in a.items()}
    x = images.double().permute(0, 2, 3, 1)  # NHWC
    n = x.shape[0]
    g = IMG // PATCH
    # Non-overlapping patches times the HWIO kernel = the strided conv.
    patches = x.reshape(n, g, PATCH, g, PATCH, 3).permute(0, 1, 3, 2, 4, 5)
    x = torch.einsum('nabhwc,hwcd->nabd', patches, t['embedding/kernel'])
    x = (x + t['embedding/bias']).reshape(n, g * g, DIMS)
    x = torch.cat([t['cls'].expand(n, 1, DIMS), x], 1)
    x = x + t['Transformer/posembed_input/pos_embedding']

    def norm(x, prefix):
        return F.layer_norm(x, (DIMS, ), t[f'{prefix}/scale'],
                            t[f'{prefix}/bias'], eps=1e-6)

    for i in range(LAYERS):
        block = f'Transformer/encoderblock_{i}'
        attn = f'{block}/MultiHeadDotProductAttention_1'
        y = norm(x, f'{block}/LayerNorm_0')
        q, k, v = (torch.einsum('nld,dhk->nlhk', y, t[f'{attn}/{p}/kernel']) +
                   t[f'{attn}/{p}/bias'] for p in ('query', 'key', 'value'))
        weights = torch.einsum('nqhk,nlhk->nhql', q, k) / (DIMS //
                                                            HEADS)**0.5
        y = torch.einsum('nhql,nlhk->nqhk', weights.softmax(-1), v)
        y = torch.einsum('nqhk,hkd->nqd', y, t[f'{attn}/out/kernel'])
        x = x + y + t[f'{attn}/out/bias']
        y = norm(x, f'{block}/LayerNorm_2')
        mlp = f'{block}/MlpBlock_3'
        y = F.gelu(y @ t[f'{mlp}/Dense_0/kernel'] + t[f'{mlp}/Dense_0/bias'])
        x = x + y @ t[f'{mlp}/Dense_1/kernel'] + t[f'{mlp}/Dense_1/bias']
    return norm(x, 'Transformer/encoder_norm')[:, 0]


def tiny_vit():
    return VisionTransformer(
        arch=dict(
            embed_dims=DIMS,
            num_layers=LAYERS,
            num_heads=HEADS,
            feedforward_channels=MLP),
        img_size=IMG,
        patch_size=PATCH)


def test_converted_vit_matches_reference_forward():
    arrays = google_arrays()
    state = convert_vit_npz(arrays)
    vit = tiny_vit()
    vit.load_state_dict(
        {k[len('backbone.'):]: v for k, v in state.items()}, strict=True)
    vit.eval()
    images = torch.randn(3, 3, IMG, IMG)
    with torch.no_grad():
        ours = vit(images)[-1]
    expected = reference_forward(arrays, images)
    assert ours.shape == expected.shape == (3, DIMS)
    torch.testing.assert_close(ours.double(), expected, rtol=1e-5,
                               atol=1e-5)
    # A wrong qkv layout (e.g. kernels not transposed) would not match.
    assert (expected.abs() > 1e-2).any()


def test_head_conversion_matches_reference_logits():
    arrays = google_arrays()
    state = convert_vit_npz(arrays, with_head=True)
    features = torch.randn(2, DIMS)
    pre = torch.tanh(features @ state['head.layers.pre_logits.weight'].T +
                     state['head.layers.pre_logits.bias'])
    logits = pre @ state['head.layers.head.weight'].T + \
        state['head.layers.head.bias']
    t = {k: torch.from_numpy(v) for k, v in arrays.items()}
    expected = torch.tanh(features @ t['pre_logits/kernel'] +
                          t['pre_logits/bias']) @ t['head/kernel'] + \
        t['head/bias']
    torch.testing.assert_close(logits, expected)
    assert 'head.layers.pre_logits.weight' not in convert_vit_npz(
        google_arrays(pre_logits=False), with_head=True)


def test_missing_key_and_bad_shape_are_named():
    arrays = google_arrays()
    del arrays['Transformer/encoderblock_1/LayerNorm_2/scale']
    with pytest.raises(NpzLayoutError,
                       match='encoderblock_1/LayerNorm_2/scale'):
        convert_vit_npz(arrays)
    arrays = google_arrays()
    arrays['cls'] = arrays['cls'][0]
    with pytest.raises(NpzLayoutError, match="'cls' has shape"):
        convert_vit_npz(arrays)
    no_blocks = {k: v for k, v in google_arrays().items()
                 if not k.startswith('Transformer/encoderblock_1')}
    no_blocks.update({k.replace('encoderblock_0', 'encoderblock_2'): v
                      for k, v in google_arrays().items()
                      if k.startswith('Transformer/encoderblock_0')})
    with pytest.raises(NpzLayoutError, match='no consecutive'):
        convert_vit_npz(no_blocks)


def run_tool(*args):
    return subprocess.run(
        [sys.executable, 'tools/model_converters/vit_npz2mmpretrain.py', *map(str, args)],
        cwd=ROOT, capture_output=True, text=True)


def test_tool_converts_atomically_and_refuses_clobber(tmp_path):
    npz = tmp_path / 'ViT-tiny.npz'
    np.savez(npz, **google_arrays())
    before = npz.read_bytes()
    out = tmp_path / 'vit.pth'
    result = run_tool(npz, out)
    assert result.returncode == 0, result.stderr
    state = torch.load(out, weights_only=True)['state_dict']
    assert set(state) == set(convert_vit_npz(google_arrays()))
    assert npz.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        'ViT-tiny.npz', 'vit.pth'
    ]  # no temporary file left behind
    # An mmpretrain model loads it through init_cfg with the usual prefix.
    vit = VisionTransformer(
        arch=dict(embed_dims=DIMS, num_layers=LAYERS, num_heads=HEADS,
                  feedforward_channels=MLP),
        img_size=IMG, patch_size=PATCH,
        init_cfg=dict(type='Pretrained', checkpoint=str(out),
                      prefix='backbone.'))
    vit.init_weights()
    torch.testing.assert_close(vit.layers[1].attn.qkv.weight,
                               state['backbone.layers.1.attn.qkv.weight'])

    stamp = out.stat().st_mtime_ns
    result = run_tool(npz, out)
    assert result.returncode == 2 and 'exists' in result.stderr
    assert out.stat().st_mtime_ns == stamp
    assert run_tool(npz, out, '--force').returncode == 0


@pytest.mark.parametrize('content,message', [
    (None, 'does not exist'),
    (b'not a zip archive', 'not a .npz file'),
    ('missing-key', "missing key 'Transformer/encoder_norm/scale'"),
])
def test_tool_bad_inputs_are_one_line_errors(tmp_path, content, message):
    npz = tmp_path / 'in.npz'
    if content == 'missing-key':
        arrays = google_arrays()
        del arrays['Transformer/encoder_norm/scale']
        np.savez(npz, **arrays)
    elif content is not None:
        npz.write_bytes(content)
    result = run_tool(npz, tmp_path / 'out.pth')
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'out.pth').exists()
