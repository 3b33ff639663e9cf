# Copyright (c) mmpetl contributors. All rights reserved.
from abc import ABCMeta, abstractmethod
from typing import Tuple

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
