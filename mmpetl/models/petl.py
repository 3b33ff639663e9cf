# Copyright (c) mmpetl contributors. All rights reserved.
"""The contract every PETL method answers.

Three questions decide what a run trains, keeps frozen and folds, whatever
the method's shape; every consumer (freezing, checkpoints, the first-step
checks, merging, ``tools/reparam.py``, :class:`ReparamCheckpointHook`,
serving) asks them of the same objects:

- *What trains* is a type: every module inside a frozen backbone that is a
  :class:`PETLModule` (adapters, low-rank deltas, scale-and-shift vectors,
  shared projections, highway stages, prompts, parallel branches), plus the
  stock parameters a parameter-selection method names
  (:meth:`~mmpetl.models.FrozenBackbone.selected_parameters`: BitFit's
  biases, LN-tuning's norms). Never a parameter name.
- *Where it acts* is an :class:`AdaptedSite`: a stock module changed by one
  PETL module, its ``adapter``, with the stock state-dict keys unchanged.
  The site's *fold form* says how the change folds into the stock module:

  ======================  ==============================  ==================
  form                    computes                        folds into
  ======================  ==============================  ==================
  input-affine            ``f(M x + m)``                  ``W M``, ``W m``
  output-affine (SSF)     ``γ ⊙ f(x) + β``                rows of W, bias
  weight delta (LoRA)     ``f`` with ``W + ΔW``           ``W + ΔW``
  not mergeable           anything else                   refuses, says why
  ======================  ==============================  ==================

- *Whether it folds* is :meth:`AdaptedSite.not_mergeable_reason` per site and
  :meth:`~mmpetl.models.FrozenBackbone.merge_blockers` per wrapper (which
  adds wrapper-level modules such as E3VA's highway).
"""
import copy
from abc import ABCMeta, abstractmethod
from typing import Optional

import torch
from torch import nn


class PETLModule(nn.Module):
    """Marker base class of every module that trains inside a frozen
    backbone. The wrappers freeze everything else by module type."""


def detached_copy(module: nn.Module, *others: nn.Module) -> nn.Module:
    """``copy.deepcopy(module)`` that also copies parameters held as views
    (FSDP with ``use_orig_params=True`` gives a module inside its forward
    views of the gathered flat parameter, which ``deepcopy`` refuses);
    ``others``: modules ``module`` refers to without owning them."""
    memo = {}
    for sub in (m for root in (module, *others) for m in root.modules()):
        for param in sub._parameters.values():
            if param is not None and id(param) not in memo:
                memo[id(param)] = nn.Parameter(param.detach().clone(),
                                               param.requires_grad)
    return copy.deepcopy(module, memo)


class AdaptedSite(nn.Module, metaclass=ABCMeta):
    """A stock module whose computation a PETL method changes.

    A site holds the stock module's own parameters under their stock names
    (a stock checkpoint loads into it) and one :class:`PETLModule` under
    ``adapter``. Subclasses implement one fold form; one that leaves an
    abstract method out cannot be built (``TypeError``).
    """

    adapter: PETLModule

    #: Short name of the fold form, for the site listing.
    fold_form: str = ''

    @abstractmethod
    def stock_module(self) -> nn.Module:
        """A copy of the stock module, without the adapter."""

    @abstractmethod
    def merged(self) -> nn.Module:
        """A copy of the stock module computing this site in evaluation
        mode (dropout off), or raise :class:`ValueError` naming why it
        cannot (see :meth:`not_mergeable_reason`)."""

    def prepare_fold(self, target: nn.Module) -> 'PreparedFold':
        """A :class:`PreparedFold` that writes :meth:`merged`'s tensors into
        ``target``, a module of the stock layout (serving's live copy), each
        time it is called. Subclasses compute once here what does not change
        between calls (the site is frozen while it serves). Default: merge
        at each call.

        Raises:
            ValueError: If the site does not fold.
        """
        self.refuse_merge()
        return MergedFold(self, target)

    def not_mergeable_reason(self) -> Optional[str]:
        """None when :meth:`merged` is exact; otherwise why not, in one
        line."""
        return None

    @abstractmethod
    def describe_fold(self) -> str:
        """What the adapter folds into, for the site listing."""

    @torch.no_grad()
    def fold_probe(self, seed: int = 0) -> 'AdaptedSite':
        """A float64 copy of this site, in evaluation mode, whose adapter
        parameters are random (far from the identity most adapters start
        at), for the first-step fold check: ``probe(x)`` must equal
        ``probe.merged()(x)``. Modules the adapter uses without owning them
        (its ``shared`` list, e.g. FacT's factors) are copied and perturbed
        too."""
        probe = detached_copy(
            self, *getattr(self.adapter, 'shared', ())).double()
        shared = [m.double() for m in getattr(probe.adapter, 'shared', ())]
        generator = torch.Generator().manual_seed(seed)
        params = [*probe.adapter.parameters(),
                  *(p for m in shared for p in m.parameters())]
        for param in params:
            param.copy_(param + 0.5 * torch.randn(
                param.shape, generator=generator, dtype=param.dtype))
        return probe.eval()

    def refuse_merge(self) -> None:
        """Raise :class:`ValueError` if this site does not fold."""
        reason = self.not_mergeable_reason()
        if reason is not None:
            raise ValueError(reason)


class PreparedFold:
    """Writes one site's fold (or any fixed tensors) into a module of the
    stock layout when called: the tensors of ``copies``, ``(destination,
    source)`` pairs, copied in order. Subclasses add computed parts.

    Args:
        copies (list[tuple[Tensor, Tensor]]): ``(destination, source)``.
    """

    def __init__(self, copies=()):
        self.copies = list(copies)

    @torch.no_grad()
    def __call__(self) -> None:
        for destination, source in self.copies:
            destination.copy_(source)

    def tensors(self) -> 'list[torch.Tensor]':
        """The tensors it reads from (for memory accounting)."""
        return [source for _, source in self.copies]


class MergedFold(PreparedFold):
    """Writes ``site.merged()``'s tensors into ``target`` when called."""

    def __init__(self, site: AdaptedSite, target: nn.Module):
        super().__init__()
        self.site = site
        self.target = target

    @torch.no_grad()
    def __call__(self) -> None:
        self.target.load_state_dict(self.site.merged().state_dict())


def adapted_sites(module: nn.Module) -> 'dict[str, AdaptedSite]':
    """``{path: site}`` of the :class:`AdaptedSite` modules in ``module``."""
    return {
        path: m
        for path, m in module.named_modules()
        if isinstance(m, AdaptedSite)
    }
