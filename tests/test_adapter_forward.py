# Copyright (c) mmpetl contributors. All rights reserved.
"""The adapters' fused forward (one GEMM for the residual up-projection)
computes the papers' formulas: same outputs in training mode (same dropout
mask), same gradients for every adapter parameter and for the input."""
import pytest
import torch
import torch.nn.functional as F

from mmpetl.models.adapters import (ARCAdapter, RepAdapter,
                                    SharedProjection)
from mmpetl.models.mergeable_adapter import add_up_projection


def rep_adapter_formula(adapter, x):
    """``x + s B(drop(A x + a_b)) + s b_b`` with B the grouped Conv1d of the
    RepAdapter reference code."""
    hidden = adapter.dropout(adapter.down(x))
    up = adapter.up
    out = F.conv1d(
        hidden.reshape(-1, up.in_features, 1), up.weight.unsqueeze(-1),
        up.bias, groups=up.groups).view(x.shape)
    return x + adapter.scale * out


def arc_formula(adapter, x):
    """``x + drop(x D) diag(lambda) D^T + b``."""
    proj = adapter.projection
    return x + adapter.dropout(x @ proj) * adapter.scale @ proj.t() \
        + adapter.bias


def rep_adapter():
    adapter = RepAdapter(48, hidden_dim=8, groups=2, scale=0.5, dropout=0.3)
    return adapter, rep_adapter_formula, list(adapter.parameters())


def arc_adapter():
    projection = SharedProjection(48, 10)
    adapter = ARCAdapter(projection, dropout=0.3)
    return adapter, arc_formula, [projection.weight, adapter.scale,
                                  adapter.bias]


@pytest.mark.parametrize('build', [rep_adapter, arc_adapter])
@pytest.mark.parametrize('shape', [(2, 7, 48), (5, 48), (2, 3, 4, 48),
                                   'transposed'])
@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_fused_forward_equals_formula(build, shape, dtype):
    # float64: the same math (1e-12); float32: the same up to rounding.
    tol = 1e-6 if dtype == torch.float32 else 1e-12
    torch.set_default_dtype(dtype)
    try:
        torch.manual_seed(0)
        adapter, formula, params = build()
    finally:
        torch.set_default_dtype(torch.float32)
    with torch.no_grad():
        for param in params:  # away from the identity init
            param.normal_(0, 0.3)
    if shape == 'transposed':  # a non-contiguous input, as from a permute
        x = torch.randn(2, 48, 6, dtype=dtype).transpose(1, 2)
    else:
        x = torch.randn(shape, dtype=dtype)
    x.requires_grad_()
    adapter.train()
    grad = torch.randn(x.shape, dtype=dtype)
    results = []
    for forward in (adapter, lambda t: formula(adapter, t)):
        torch.manual_seed(1)  # the same dropout mask for both
        out = forward(x)
        grads = torch.autograd.grad(out, [x] + params, grad)
        results.append((out, grads))
    (out, grads), (ref, ref_grads) = results
    assert out.shape == x.shape
    # Dropout acted (training mode), and on both alike.
    torch.manual_seed(1)
    assert not torch.allclose(adapter.eval()(x), out)
    assert out.dtype == dtype
    torch.testing.assert_close(out, ref, rtol=tol, atol=tol)
    for g, ref_g in zip(grads, ref_grads):
        # Sums over tokens in another order: relative to the largest entry.
        torch.testing.assert_close(
            g, ref_g, rtol=10 * tol, atol=tol * float(ref_g.abs().max()))


def test_add_up_projection_is_one_residual_gemm():
    torch.manual_seed(0)
    x, hidden = torch.randn(3, 4, 6), torch.randn(3, 4, 2)
    weight, bias = torch.randn(6, 2), torch.randn(6)
    out = add_up_projection(x, hidden, weight, bias, scale=2.5)
    torch.testing.assert_close(out, x + 2.5 * (hidden @ weight.t() + bias))
    # x is the accumulator: no (..., d) temporaries saved for backward.
    saved = []
    x.requires_grad_()
    weight.requires_grad_()
    with torch.autograd.graph.saved_tensors_hooks(
            lambda t: saved.append(t.shape) or t, lambda t: t):
        add_up_projection(x, hidden, weight, bias)
    assert torch.Size([12, 6]) not in saved and torch.Size(x.shape) \
        not in saved
