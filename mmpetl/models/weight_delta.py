# Copyright (c) mmpetl contributors. All rights reserved.
"""The weight-delta fold form: a linear computed with ``W + ΔW`` (LoRA,
DoRA, FacT), on an ``nn.Linear`` the block calls (:class:`DeltaLinear`) or
on a weight a module applies itself (:class:`DeltaWeightLinear`,
:class:`DeltaModuleSite`)."""
from abc import ABCMeta, abstractmethod
from typing import Optional

import torch
from torch import Tensor, nn
from torch.func import functional_call

from .adapted_linear import adopt_linear, stock_linear
from .adapted_module import ModuleSite
from .petl import AdaptedSite, PETLModule


class WeightDelta(PETLModule, metaclass=ABCMeta):
    """Base class of the adapters that change a linear's weight.

    A subclass computes the adapted linear's whole output in its
    :meth:`forward` (so that it can keep a low-rank branch low-rank, or
    rescale rows as DoRA does), gives the adapted weight itself in
    :meth:`adapted_weight` (for a module that applies the weight itself)
    and the folded weight in :meth:`merged_weight`. In evaluation mode
    (dropout off) the three describe the same linear map:
    ``forward(x, W, c) = x @ adapted_weight(W).T + c =
    x @ merged_weight(W).T + c``. A subclass without all three cannot be
    built (``TypeError``).

    ``forward(None, W, None)`` returns :meth:`adapted_weight` ``(W)``: the
    sites whose module applies the weight itself call the adapter that way,
    so that the adapter's forward runs (and its hooks fire) on every site.
    """

    @abstractmethod
    def forward(self, x: Optional[Tensor], weight: Tensor, bias) -> Tensor:
        """The adapted linear's output on ``x`` (..., in); with ``x`` None,
        :meth:`adapted_weight` ``(weight)``."""

    @abstractmethod
    def adapted_weight(self, weight: Tensor) -> Tensor:
        """The weight (out, in) the adapted linear applies, in ``weight``'s
        dtype and differentiable; no dropout (it acts on inputs)."""

    @abstractmethod
    def merged_weight(self, weight: Tensor) -> Tensor:
        """The folded weight (out, in), from the stock ``weight`` in
        float64; computed in float64 and without forming a dense
        ``(in, in)`` matrix."""


class DeltaLinear(nn.Linear, AdaptedSite):
    """A frozen ``nn.Linear`` whose weight a :class:`WeightDelta` changes.

    It keeps the linear's own ``weight`` and ``bias`` (same objects, same
    state-dict keys) and adds the adapter's under ``adapter.``. Folding
    writes ``merged_weight(W)`` into a copy of the stock linear; the bias is
    unchanged.

    Args:
        linear (nn.Linear): The target linear. Not copied.
        adapter (WeightDelta): Its delta.

    Shapes:
        input: (..., in_features) -> output: (..., out_features).
    """

    fold_form = 'weight delta'

    def __init__(self, linear: nn.Linear, adapter: WeightDelta):
        nn.Module.__init__(self)
        adopt_linear(self, linear)
        self.adapter = adapter.to(linear.weight.device)
        self.train(linear.training)

    def forward(self, x: Tensor) -> Tensor:
        return self.adapter(x, self.weight, self.bias)

    def stock_module(self) -> nn.Linear:
        return stock_linear(self)

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        linear = self.stock_module()
        linear.weight.copy_(self.adapter.merged_weight(
            linear.weight.double()))
        return linear

    def describe_fold(self) -> str:
        return 'weight + delta'


class DeltaWeightLinear(DeltaLinear):
    """A :class:`DeltaLinear` whose block reads its ``weight`` rather than
    calling it (BEiT, Swin V2 and VideoMAE attention:
    ``F.linear(x, qkv.weight, cat(q_bias, 0, v_bias))``): reading
    ``.weight`` gives ``adapted_weight(W)``, so the block applies the
    adapted weight whatever it does with the bias, and the fold (the stock
    ``W`` under the stock key, ``merged_weight(W)`` when merged) is exact.
    A block that calls it gets :class:`DeltaLinear`'s forward.

    Read that way, the delta cannot see its own input, so a dropout on it
    (LoRA's ``drop(x)``, FacT's dropped code) cannot act there:
    ``B A drop(x)`` does not factor out of ``x`` (peft refuses dropout on
    such weights for the same reason); the wrapper says so in one warning
    line at build (:func:`dropout_note`).

    Args:
        linear (nn.Linear): The target linear. Not copied.
        adapter (WeightDelta): Its delta.
    """

    def __init__(self, linear: nn.Linear, adapter: WeightDelta):
        nn.Module.__init__(self)
        # ``weight`` is a property here: the stock weight is registered
        # directly, under its stock key.
        self._parameters['weight'] = linear.weight
        self.bias = linear.bias
        self.in_features = linear.in_features
        self.out_features = linear.out_features
        self.linear_type = type(linear)
        self.adapter = adapter.to(linear.weight.device)
        self.train(linear.training)

    @property
    def weight(self) -> Tensor:
        return self.adapter(None, self._parameters['weight'], None)

    def probe_input(self) -> tuple:
        """``(args, kwargs)`` of a random input (2, in) for the first-step
        fold check, which cannot capture one: the block reads the weight
        and never calls this site."""
        stock = self._parameters['weight']
        x = torch.randn(2, self.in_features,
                        generator=torch.Generator().manual_seed(0))
        return (x.to(stock.device, stock.dtype), ), {}

    def forward(self, x: Tensor) -> Tensor:
        return self.adapter(x, self._parameters['weight'], self.bias)

    @torch.no_grad()
    def stock_module(self) -> nn.Linear:
        linear = torch.nn.utils.skip_init(
            self.linear_type,
            self.in_features,
            self.out_features,
            bias=self.bias is not None,
            device=self._parameters['weight'].device,
            dtype=self._parameters['weight'].dtype)
        linear.load_state_dict(self.state_dict(keep_vars=False),
                               strict=False)
        linear.requires_grad_(False)
        return linear

    @torch.no_grad()
    def merged(self) -> nn.Linear:
        linear = self.stock_module()
        linear.weight.copy_(
            self.adapter.merged_weight(linear.weight.double()))
        return linear


class DeltaModuleSite(ModuleSite):
    """A frozen module that applies a weight itself, with a
    :class:`WeightDelta` on that weight.

    For ``nn.MultiheadAttention`` (``in_proj_weight``, a parameter of the
    module itself, applied inside ``F.multi_head_attention_forward``): no
    linear's ``forward`` is called, so the delta acts on the weight. Each forward runs
    the module with ``W`` replaced by ``adapted_weight(W)``
    (``torch.func.functional_call``), whatever the module does with its
    bias; folding writes ``merged_weight(W)`` into a copy of the stock
    module, its biases unchanged, so the fold is exact whatever stores them.

    The module applies the weight to one input, so a dropout on the delta's
    own input (LoRA's ``drop(x)``, FacT's dropped code) cannot act here
    (``B A drop(x)`` does not factor out of ``x``; peft refuses dropout on
    such weights for the same reason): these sites run without it, and the
    wrapper says so in one warning line at build (:func:`dropout_note`).

    Args:
        module (nn.Module): The stock module. Not copied.
        adapter (WeightDelta): The delta.
        weight (str): Path of the weight (out, in) inside the module, e.g.
            ``'qkv.weight'``, ``'in_proj_weight'``.
    """

    fold_form = 'weight delta'

    def __init__(self, module: nn.Module, adapter: WeightDelta, weight: str):
        super().__init__(module, adapter)
        self.weight_name = weight

    def forward(self, *args, **kwargs):
        stock = self.module.get_parameter(self.weight_name)
        return functional_call(self.module,
                               {self.weight_name: self.adapter(
                                   None, stock, None)}, args, kwargs)

    @torch.no_grad()
    def merged(self) -> nn.Module:
        module = self.stock_module()
        weight = module.get_parameter(self.weight_name)
        weight.copy_(self.adapter.merged_weight(weight.double()))
        return module

    def describe_fold(self) -> str:
        return f'{self.weight_name} + delta'


def delta_site(module: nn.Module, adapter: WeightDelta,
               weight: Optional[str]) -> AdaptedSite:
    """The weight-delta site of ``module``: a :class:`DeltaLinear` for an
    ``nn.Linear`` the block calls (``weight`` None), a
    :class:`DeltaWeightLinear` for one whose block reads its ``weight``
    (``weight='weight'``), else a :class:`DeltaModuleSite` on the module's
    weight at path ``weight``."""
    if weight is None:
        return DeltaLinear(module, adapter)
    if isinstance(module, nn.Linear) and weight == 'weight':
        return DeltaWeightLinear(module, adapter)
    return DeltaModuleSite(module, adapter, weight)


def dropout_note(wrapper: nn.Module, dropout: float) -> Optional[str]:
    """One line saying which sites of ``wrapper`` run without the delta's
    dropout (:class:`DeltaModuleSite`, :class:`DeltaWeightLinear`), or None when none does (or
    ``dropout`` is 0)."""
    paths = [
        name for name, m in wrapper.backbone.named_modules()
        if isinstance(m, (DeltaModuleSite, DeltaWeightLinear))
    ]
    if not paths or not dropout:
        return None
    return (f'{type(wrapper).__name__}: {len(paths)} site(s) have their '
            f'weight applied by the enclosing module (e.g. {paths[0]}): '
            f'the delta acts on the weight there and its dropout '
            f'({dropout:g}) cannot act on its own input; those sites run '
            'without dropout')
