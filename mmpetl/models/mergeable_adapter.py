# Copyright (c) mmpetl contributors. All rights reserved.
from abc import ABCMeta
from typing import Optional, Tuple

import torch
from torch import Tensor

from .petl import PETLModule


class MergeableAdapter(PETLModule, metaclass=ABCMeta):
    """Base class of *input-affine* adapters: they sit on the input of a
    linear map and fold into it.

    A subclass is an *affine* map of the last dimension (in evaluation mode,
    i.e. with dropout off)::

        a(x) = x @ M^T + m,    x: (..., d),  M: (d, d),  m: (d,)

    and reports ``M`` and ``m`` through :meth:`affine`. Everything that merges
    adapters works from this one protocol, whatever the method.
    """

    in_features: int
    #: Whether ``m`` can be non-zero. Adapters built for a site that takes
    #: no shift (``AttachSite.shift``) must set it False.
    has_shift: bool = True

    def __init__(self) -> None:
        super().__init__()
        cls = type(self)
        if (cls.affine is MergeableAdapter.affine
                and cls.low_rank is MergeableAdapter.low_rank):
            raise TypeError(f'{cls.__name__} implements neither affine() '
                            'nor low_rank(): a MergeableAdapter must give '
                            'its map')

    def affine(self) -> Tuple[Tensor, Tensor]:
        """Return ``(M, m)`` with ``a(x) = x @ M.T + m`` in evaluation mode.

        Computed in float64 so that folding adds no rounding of its own.
        Defaults to ``M = I + U V^T`` from :meth:`low_rank`; adapters without
        low-rank factors override it (``__init__`` checks that one of the
        two is implemented).
        """
        up, down, shift = self.low_rank()
        eye, _ = self.identity_affine(device=up.device)
        return torch.addmm(eye, up, down.t()), shift

    def low_rank(self) -> Optional[Tuple[Tensor, Tensor, Tensor]]:
        """``(U, V, m)`` with ``M = I + U V^T`` (``U``, ``V``: (d, r)), in
        float64, for adapters whose map is the identity plus a low-rank
        term; None otherwise. Folding then computes ``W + (W U) V^T``
        (``O(out d r)``) instead of the dense ``W M`` (``O(out d^2)``)."""
        return None

    def identity_affine(self, dtype: torch.dtype = torch.float64,
                        device=None) -> Tuple[Tensor, Tensor]:
        """The identity map ``(I, 0)`` of this adapter's dimension."""
        eye = torch.eye(self.in_features, dtype=dtype, device=device)
        return eye, eye.new_zeros(self.in_features)


class AffineStandIn(MergeableAdapter):
    """A random affine map ``a(x) = x M^T + m`` (float64 buffers).

    ``M = I + 0.5 R / sqrt(d)`` with ``R`` standard normal (well
    conditioned, far from the identity), ``m`` standard normal, or zero for
    a site whose adapters have no shift.

    Args:
        in_features (int): Width ``d``.
        shift (bool): Whether ``m`` is non-zero.
        seed (int): Seed of the generator.
    """

    def __init__(self, in_features: int, shift: bool = True, seed: int = 0):
        super().__init__()
        self.in_features = in_features
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(
            in_features, in_features, generator=generator,
            dtype=torch.float64)
        self.register_buffer(
            'matrix',
            torch.eye(in_features, dtype=torch.float64) +
            0.5 * noise / in_features**0.5)
        self.register_buffer(
            'shift',
            torch.randn(in_features, generator=generator, dtype=torch.float64)
            * float(shift))

    def forward(self, x: Tensor) -> Tensor:
        return x @ self.matrix.t().to(x.dtype) + self.shift.to(x.dtype)

    def affine(self) -> Tuple[Tensor, Tensor]:
        return self.matrix, self.shift


def add_up_projection(x: Tensor,
                      hidden: Tensor,
                      weight: Tensor,
                      bias: Optional[Tensor],
                      scale: float = 1.0) -> Tensor:
    """``x + scale * (hidden @ weight.T + bias)``, the residual up-projection
    that ends a sequential adapter, as one GEMM.

    The bias rides along as an extra hidden unit fixed at 1 and ``x`` is the
    GEMM's accumulator (``torch.addmm(x, [hidden, 1], [weight.T; bias],
    alpha=scale)``), so the forward writes one (..., d) tensor instead of
    three (product, bias sum, residual sum), and the backward gets the bias
    gradient from the weight-gradient GEMM instead of a reduction over the
    tokens. Equal to the unfused formula up to float rounding (summation
    order); under autocast the sum is formed in the autocast dtype, to which
    the linear after the adapter casts it anyway.

    Args:
        x (Tensor): The adapter's input, shape (..., d).
        hidden (Tensor): The hidden units, shape (..., h).
        weight (Tensor): The up-projection, shape (d, h).
        bias (Tensor, optional): Its bias, shape (d, ); ``None`` for an
            adapter without shift.
        scale (float): The scale of the branch.

    Returns:
        Tensor: shape (..., d).
    """
    up = weight.t()
    if bias is not None:
        hidden = torch.cat(
            [hidden, hidden.new_ones(hidden.shape[:-1] + (1, ))], dim=-1)
        up = torch.cat([up, bias.unsqueeze(0)])
    out = torch.addmm(
        x.reshape(-1, x.shape[-1]),
        hidden.reshape(-1, hidden.shape[-1]),
        up,
        alpha=scale)
    return out.view(x.shape)
