# Copyright (c) mmpetl contributors. All rights reserved.
from abc import ABCMeta, abstractmethod
from typing import Optional, Tuple

import torch
from torch import Tensor, nn


class MergeableAdapter(nn.Module, metaclass=ABCMeta):
    """Base class of adapters that sit on the input of a linear layer and can
    be folded into it.

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

    @abstractmethod
    def affine(self) -> Tuple[Tensor, Tensor]:
        """Return ``(M, m)`` with ``a(x) = x @ M.T + m`` in evaluation mode.

        Computed in float64 so that folding adds no rounding of its own.
        """

    def identity_affine(self, dtype: torch.dtype = torch.float64,
                        device=None) -> Tuple[Tensor, Tensor]:
        """The identity map ``(I, 0)`` of this adapter's dimension."""
        eye = torch.eye(self.in_features, dtype=dtype, device=device)
        return eye, eye.new_zeros(self.in_features)


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
