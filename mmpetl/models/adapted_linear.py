# Copyright (c) mmpetl contributors. All rights reserved.
from abc import ABCMeta, abstractmethod
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .mergeable_adapter import AffineStandIn, MergeableAdapter
from .petl import AdaptedSite, PreparedFold


@torch.no_grad()
def low_rank_terms(weight: Tensor,
                   factors: Tuple[Tensor, Tensor, Tensor]
                   ) -> Tuple[Tensor, Tensor, Tensor]:
    """The terms of the rank-r fold of ``M = I + U V^T``, ``m`` into a
    weight ``W`` (out, in): ``(W U, V^T, W m)``.

    Args:
        weight (Tensor): ``W``, (out, in).
        factors (tuple[Tensor]): ``(U, V, m)`` of
            :meth:`MergeableAdapter.low_rank`: (in, r), (in, r), (in, ).

    Returns:
        tuple[Tensor]: ``W U`` (out, r) and ``V^T`` (r, in), contiguous, in
        the weight's dtype (``W U`` and ``W m`` computed in one pass over
        ``W``), and ``W m`` (out, ) in float64.
    """
    up, down, shift = (f.to(weight.dtype) for f in factors)
    product = weight @ torch.cat([up, shift[:, None]], dim=1)
    return (product[:, :-1].contiguous(), down.t().contiguous(),
            product[:, -1].double())


@torch.no_grad()
def fold_adapter(weight: Tensor, adapter: MergeableAdapter) -> Tensor:
    """Fold ``adapter`` into a linear's ``weight`` (out, in) in place:
    ``W <- W M``.

    With ``a(x) = M x + m``: returns ``W m`` (float64), what the adapter
    adds to the linear's bias. An adapter with
    :meth:`~MergeableAdapter.low_rank` factors ``M = I + U V^T`` folds as the
    rank-r update ``W += (W U) V^T`` in the weight's dtype
    (:func:`low_rank_terms`; one rounding of each entry, no ``(in, in)``
    matrix); a dense ``M`` is applied in float64 and cast back.
    """
    factors = adapter.low_rank()
    if factors is None:
        matrix, shift = adapter.affine()
        full = weight.double()
        shift = full @ shift
        weight.copy_(full @ matrix)
        return shift
    product, down_t, shift = low_rank_terms(weight, factors)
    weight.addmm_(product, down_t)
    return shift


def find_parameter(module: nn.Module, path: str) -> Optional[nn.Parameter]:
    """The parameter at ``path`` (e.g. ``'qkv.weight'``) inside ``module``,
    or None if there is none (a missing attribute, or one set to None)."""
    owner_path, _, name = path.rpartition('.')
    try:
        owner = module.get_submodule(owner_path)
    except AttributeError:
        return None
    param = getattr(owner, name, None)
    return param if isinstance(param, nn.Parameter) else None


@dataclass(frozen=True)
class FoldTarget:
    """Where an adapter on a module's input folds: a weight parameter
    ``W`` (out, in) that the module applies to that input, and the bias
    parameters that take ``W m`` (the *bias sink*).

    Folding ``a(x) = M x + m``: ``W' = W M``; ``W m`` is split into
    ``len(bias_sink)`` equal chunks added to the named parameters, in order.
    A chunk named ``None`` is dropped: the module's output must not depend on
    it (attention is invariant to a key bias under softmax). When a named
    parameter is missing (e.g. attention built without q / v bias), the
    weight's sibling ``bias`` (``qkv.bias`` for ``qkv.weight``) takes the
    whole ``W m``; without either, ``W m`` must be zero.

    Args:
        weight (str): Path of ``W`` inside the module, e.g. ``'weight'``,
            ``'qkv.weight'``, ``'in_proj_weight'``.
        bias_sink (tuple[str | None]): Paths of the bias parameters, one
            per chunk. Empty: the sibling bias.
    """
    weight: str
    bias_sink: Tuple[Optional[str], ...] = ()

    def sibling_bias(self) -> Optional[str]:
        owner, _, name = self.weight.rpartition('.')
        if name != 'weight':
            return None
        return f'{owner}.bias' if owner else 'bias'

    def sink_paths(self,
                   module: nn.Module) -> Optional[Tuple[Optional[str], ...]]:
        """Paths of the parameters ``W m`` goes to, one per chunk (None:
        dropped); None when the module has no bias to take it."""
        named = [n for n in self.bias_sink if n is not None]
        if named and all(find_parameter(module, n) is not None
                         for n in named):
            return self.bias_sink
        sibling = self.sibling_bias()
        if sibling is not None and find_parameter(module, sibling) \
                is not None:
            return (sibling, )
        return None

    def folded_biases(self, module: nn.Module,
                      shift: Tensor) -> Dict[str, Tensor]:
        """Path -> folded value of each bias sink of ``module``: the
        parameter plus its chunk of ``shift`` (``W m``, float64, cast to
        the parameter's dtype).

        Raises:
            ValueError: If ``W m`` is non-zero and the module has no bias
                to take it, or a bias sink has the wrong shape.
        """
        paths = self.sink_paths(module)
        if paths is None:
            if bool(shift.abs().max() > 0):
                named = [n for n in self.bias_sink if n]
                raise ValueError(
                    'cannot fold an adapter with a non-zero shift into '
                    f'{type(module).__name__}.{self.weight}: it has no bias' +
                    (f' and the module has no {" / ".join(named)} (built '
                     'without qkv bias?)' if named else
                     ' (a linear without bias)'))
            return {}
        folded = {}
        for path, chunk in zip(paths, shift.chunk(len(paths))):
            if path is None:
                continue
            sink = find_parameter(module, path)
            if sink.shape != chunk.shape:
                raise ValueError(
                    f'bias sink of {type(module).__name__}.{self.weight}'
                    f' has shape {tuple(sink.shape)}, not that of its '
                    f'chunk {tuple(chunk.shape)}')
            folded[path] = sink + chunk.to(sink.dtype)
        return folded

    @torch.no_grad()
    def fold(self, module: nn.Module, adapter: MergeableAdapter) -> None:
        """Fold ``adapter`` into ``module``'s parameters, in place.

        Raises:
            ValueError: See :meth:`folded_biases`.
        """
        shift = fold_adapter(find_parameter(module, self.weight), adapter)
        for path, value in self.folded_biases(module, shift).items():
            find_parameter(module, path).copy_(value)

    def describe(self, module: nn.Module) -> str:
        """E.g. ``'qkv.weight; bias -> q_bias | dropped | v_bias'``."""
        paths = self.sink_paths(module)
        if paths is None:
            bias = 'no bias (shift must be zero)'
        elif len(paths) == 1 and not self.bias_sink:
            bias = f'bias -> {self.sibling_bias()}'
        else:
            bias = 'bias -> ' + ' | '.join(n or 'dropped'
                                           for n in self.bias_sink)
        return f'{self.weight}; {bias}'


class LowRankFold(PreparedFold):
    """A prepared rank-r fold into a live weight: each call copies
    ``copies`` (the site's other stock tensors, its folded bias sinks) and
    writes ``W + P V^T`` into ``out`` in one ``addmm`` from the original
    ``W``, so every call gives the same bits.

    Args:
        copies (list[tuple[Tensor, Tensor]]): ``(destination, source)``.
        weight (Tensor): The original ``W`` (out, in).
        product (Tensor): ``P = W U`` (out, r).
        down_t (Tensor): ``V^T`` (r, in).
        out (Tensor): The live weight.
    """

    def __init__(self, copies, weight: Tensor, product: Tensor,
                 down_t: Tensor, out: Tensor):
        super().__init__(copies)
        self.weight = weight
        self.product = product
        self.down_t = down_t
        self.out = out

    @torch.no_grad()
    def __call__(self) -> None:
        super().__call__()
        torch.addmm(self.weight, self.product, self.down_t, out=self.out)

    def tensors(self) -> List[Tensor]:
        return [*super().tensors(), self.weight, self.product, self.down_t]


class InputAffineSite(AdaptedSite, metaclass=ABCMeta):
    """The input-affine fold form: an adapter ``a(x) = M x + m``
    (:class:`MergeableAdapter`) on the input of a module that applies a
    weight ``W`` to it; folds as ``W' = W M`` with ``W m`` into the bias
    sink (:class:`FoldTarget`). ``fold_target`` None: a site that cannot
    fold."""

    fold_form = 'input-affine'
    adapter: MergeableAdapter
    fold_target: Optional[FoldTarget]

    @abstractmethod
    def rewrap(self, module: nn.Module,
               adapter: MergeableAdapter) -> 'InputAffineSite':
        """The same site around another copy of the module and adapter."""

    def not_mergeable_reason(self) -> Optional[str]:
        if self.fold_target is None:
            return (f'the adapter on {type(self.wrapped_stock()).__name__} is '
                    'at a non-mergeable site (no fold target)')
        return None

    def wrapped_stock(self) -> nn.Module:
        """The stock module as it runs in this site, not a copy: the site
        itself for a linear."""
        return self

    @torch.no_grad()
    def fold_probe(self, seed: int = 0) -> 'InputAffineSite':
        """A float64 copy of the site around a random affine stand-in
        (:class:`AffineStandIn`, full rank), so that the check covers the
        whole fold target, not only the directions the adapter uses."""
        stand_in = AffineStandIn(self.adapter.in_features,
                                 self.adapter.has_shift, seed)
        stock = self.stock_module().double()
        device = next(stock.parameters()).device
        return self.rewrap(stock, stand_in.to(device)).eval()

    @torch.no_grad()
    def prepare_fold(self, target: nn.Module) -> PreparedFold:
        """With :meth:`~MergeableAdapter.low_rank` factors, a
        :class:`LowRankFold`: ``W U``, ``V^T`` and the folded bias sinks
        computed once, from this site's tensors; each call writes ``W +
        (W U) V^T`` and copies the rest (:meth:`merged`'s arithmetic, without
        a module or a copy of the weight). A dense adapter merges at each
        call.

        Raises:
            ValueError: If the site does not fold (see :meth:`merged`).
        """
        self.refuse_merge()
        factors = self.adapter.low_rank()
        if factors is None:
            return super().prepare_fold(target)
        fold = self.fold_target
        weight = find_parameter(self, fold.weight)
        product, down_t, shift = low_rank_terms(weight, factors)
        sources = {
            key: tensor
            for key, tensor in self.state_dict(keep_vars=True).items()
            if not key.startswith('adapter.') and key != fold.weight
        }
        sources.update(fold.folded_biases(self, shift))
        live = target.state_dict(keep_vars=True)
        return LowRankFold([(live[key], source)
                            for key, source in sources.items()],
                           weight, product, down_t, live[fold.weight])

    @torch.no_grad()
    def merged(self) -> nn.Module:
        """A copy of the stock module computing this site with dropout off:
        ``W' = W M``, ``W m`` into the bias sink (:func:`fold_adapter`).

        Raises:
            ValueError: If the site cannot fold, or the folded bias is
                non-zero and has nowhere to go.
        """
        self.refuse_merge()
        module = self.stock_module()
        self.fold_target.fold(module, self.adapter)
        module.train(self.training)
        return module

    def describe_fold(self) -> str:
        if self.fold_target is None:
            return 'not mergeable'
        return self.fold_target.describe(self.wrapped_stock())


#: The fold target of an :class:`AdaptedLinear`: its own weight and bias.
LINEAR_TARGET = FoldTarget('weight')


class AdaptedLinear(nn.Linear, InputAffineSite):
    """A frozen ``nn.Linear`` with an adapter on its input.

    ``y = W a(x) + c``. It keeps the wrapped linear's own ``weight`` and
    ``bias`` parameters (same objects, same state-dict keys), and adds the
    adapter's under ``adapter.``, so a stock checkpoint still loads into it.
    The face of the input-affine form for a linear whose ``forward`` its
    block calls; :class:`~mmpetl.models.AdaptedModule` is the other.

    Args:
        linear (nn.Linear): The target linear. Not copied.
        adapter (MergeableAdapter): The adapter, of width ``in_features``.

    Shapes:
        input: (..., in_features) -> output: (..., out_features).
    """

    fold_target = LINEAR_TARGET

    def __init__(self, linear: nn.Linear, adapter: MergeableAdapter):
        nn.Module.__init__(self)
        if adapter.in_features != linear.in_features:
            raise ValueError(f'adapter width {adapter.in_features} != linear '
                             f'in_features {linear.in_features}')
        adopt_linear(self, linear)
        self.adapter = adapter.to(linear.weight.device)
        self.train(linear.training)

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.adapter(x), self.weight, self.bias)

    def stock_module(self) -> nn.Linear:
        return stock_linear(self)

    def rewrap(self, linear: nn.Linear,
               adapter: MergeableAdapter) -> 'AdaptedLinear':
        return AdaptedLinear(linear, adapter)


def adopt_linear(site: nn.Module, linear: nn.Linear) -> None:
    """Give ``site`` the linear's own ``weight`` and ``bias`` (same objects,
    same keys) and sizes, and remember its class (e.g. mmcv's Linear) so
    that the merged layer is of the stock class."""
    site.in_features = linear.in_features
    site.out_features = linear.out_features
    site.weight = linear.weight
    site.bias = linear.bias
    site.linear_type = type(linear)


@torch.no_grad()
def stock_linear(site: nn.Module) -> nn.Linear:
    """A copy of the linear a site adopted (:func:`adopt_linear`)."""
    # skip_init: no random init of a weight about to be overwritten (the
    # bulk of a switch's time in serving).
    linear = torch.nn.utils.skip_init(
        site.linear_type,
        site.in_features,
        site.out_features,
        bias=site.bias is not None,
        device=site.weight.device,
        dtype=site.weight.dtype)
    linear.weight.copy_(site.weight)
    linear.weight.requires_grad_(site.weight.requires_grad)
    if site.bias is not None:
        linear.bias.copy_(site.bias)
        linear.bias.requires_grad_(site.bias.requires_grad)
    linear.train(site.training)
    return linear
