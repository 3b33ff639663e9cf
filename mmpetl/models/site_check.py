# Copyright (c) mmpetl contributors. All rights reserved.
"""Proof that every adapter of a wrapper runs and folds exactly.

An adapter wrapped around a linear that its block never calls (a module
computing ``F.linear(x, qkv.weight, ...)`` itself) trains nothing and folds
into nothing, yet everything "works". And an adapter whose fold target is
not what the module computes (a wrong bias sink, a dropped bias chunk the
module is not invariant to, a module that also uses its input elsewhere)
merges into a different model. :func:`check_sites` rules out both:

1. *Runs*: on one forward of the backbone, forward hooks mark every
   adapter that ran.
2. *Folds*: every mergeable site's module (a float64 copy, in eval mode)
   gets a random affine stand-in adapter ``a(x) = M x + m``
   (:class:`AffineStandIn`); with the site's input ``x`` captured on that
   forward (one sample), ``module(a(x))`` must equal the folded module on
   ``x`` to ``tolerance`` (relative).

It costs one forward of the backbone on one sample and two forwards per
site module, in float64 with autocast off. :class:`AdapterBackbone` runs it
once, on its first training-mode forward (before the first optimizer step;
inside DDP and AMP alike), or at build time on request.
"""
from contextlib import ExitStack
from typing import Any, Callable, Dict, List, Optional, Tuple

import torch
from torch import Tensor, nn

from .mergeable_adapter import MergeableAdapter


class AttachSiteError(RuntimeError):
    """An adapter that does not run, or does not fold exactly."""


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


def adapted_sites(backbone: nn.Module) -> Dict[str, nn.Module]:
    """``{path: module}`` of the adapted modules (those with an
    ``adapter`` and a ``merged`` method) inside ``backbone``."""
    return {
        path: module
        for path, module in backbone.named_modules()
        if isinstance(getattr(module, 'adapter', None), MergeableAdapter)
        and callable(getattr(module, 'merged', None))
    }


def output_tensors(output: Any) -> List[Tensor]:
    """The tensors in a (nested) module output."""
    if isinstance(output, Tensor):
        return [output]
    if isinstance(output, (list, tuple)):
        return [t for o in output for t in output_tensors(o)]
    if isinstance(output, dict):
        return [t for o in output.values() for t in output_tensors(o)]
    return []


def relative_difference(expected: Any, actual: Any) -> float:
    """``max |a - b| / max |a|`` over the tensors of two outputs (inf when
    they hold different tensors)."""
    expected, actual = output_tensors(expected), output_tensors(actual)
    if len(expected) != len(actual) or not expected or any(
            a.shape != b.shape for a, b in zip(expected, actual)):
        return float('inf')
    worst = 0.
    for a, b in zip(expected, actual):
        scale = a.abs().max().clamp_min(torch.finfo(a.dtype).tiny)
        worst = max(worst, float((a - b).abs().max() / scale))
    return worst


def _map_tensors(fn: Callable[[Tensor], Tensor],
                 value: Any,
                 memo: Optional[Dict[int, Tensor]] = None) -> Any:
    """``value`` with ``fn`` applied to its tensors; a tensor met twice
    maps to one result (``query is key`` stays true)."""
    memo = {} if memo is None else memo
    if isinstance(value, Tensor):
        if id(value) not in memo:
            memo[id(value)] = fn(value)
        return memo[id(value)]
    if isinstance(value, (list, tuple)):
        return type(value)(_map_tensors(fn, v, memo) for v in value)
    if isinstance(value, dict):
        return {k: _map_tensors(fn, v, memo) for k, v in value.items()}
    return value


def _to_double(t: Tensor) -> Tensor:
    return t.double() if t.is_floating_point() else t


def first_sample(args: Any) -> Any:
    """Every tensor in ``args`` cut to its first entry along dim 0."""
    return _map_tensors(lambda t: t[:1] if t.dim() else t, args)


@torch.no_grad()
def _run_and_capture(backbone: nn.Module, sites: Dict[str, nn.Module],
                     args: tuple, kwargs: dict) -> Tuple[set, dict]:
    """Run ``backbone`` in eval mode, autocast off; return the adapted
    sites that ran and each one's (args, kwargs), cloned."""
    ran, captured = set(), {}
    training = {m: m.training for m in backbone.modules()}
    device = next((t.device for t in output_tensors((args, kwargs))),
                  torch.device('cpu'))
    with ExitStack() as stack:
        for path, module in sites.items():

            def capture(module, a, k, path=path):
                captured[path] = _map_tensors(torch.clone, (a, k))

            def mark(module, a, out, path=path):
                ran.add(path)

            stack.callback(
                module.register_forward_pre_hook(
                    capture, with_kwargs=True).remove)
            stack.callback(module.adapter.register_forward_hook(mark).remove)
        stack.enter_context(torch.autocast(device.type, enabled=False))
        for module in training:
            module.training = False
        try:
            backbone(*args, **kwargs)
        finally:
            for module, mode in training.items():
                module.training = mode
    return ran, captured


@torch.no_grad()
def fold_error(site: nn.Module, args: tuple, kwargs: dict,
               seed: int = 0) -> float:
    """Relative difference between ``site`` with a random stand-in adapter
    and its folded module, on ``site``'s input ``(args, kwargs)``, in
    float64."""
    stand_in = AffineStandIn(site.adapter.in_features,
                             site.adapter.has_shift, seed)
    stock = site.stock_module().double()
    probe = site.rewrap(stock, stand_in.to(
        next(stock.parameters()).device))
    probe.eval()
    args, kwargs = _map_tensors(_to_double, (args, kwargs))
    expected = probe(*args, **kwargs)
    merged = probe.merged()
    merged.eval()
    return relative_difference(expected, merged(*args, **kwargs))


def check_sites(backbone: nn.Module,
                *args,
                tolerance: float = 1e-6,
                owner: str = 'adapter wrapper',
                **kwargs) -> Dict[str, float]:
    """Prove that every adapter in ``backbone`` runs on ``backbone(*args,
    **kwargs)`` and that every mergeable one folds exactly.

    Args:
        backbone (nn.Module): The backbone holding adapted modules.
        *args, **kwargs: Its input (one sample is enough; the caller cuts).
        tolerance (float): Largest relative fold error (float64).
        owner (str): Who checks, for the error message.

    Returns:
        dict: ``{site path: fold error}`` of the mergeable sites.

    Raises:
        AttachSiteError: One line naming the failing sites and what to do.
    """
    # The check builds modules (their init draws from the global RNG):
    # leave every RNG as it was, so that a run checked at its first step
    # (also after --resume) draws what an unchecked one would.
    devices = sorted({t.device.index for t in output_tensors((args, kwargs))
                      if t.is_cuda})
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        return _check_sites(backbone, args, kwargs, tolerance, owner)


def _check_sites(backbone: nn.Module, args: tuple, kwargs: dict,
                 tolerance: float, owner: str) -> Dict[str, float]:
    sites = adapted_sites(backbone)
    ran, captured = _run_and_capture(backbone, sites, args, kwargs)
    silent = [path for path in sites if path not in ran]
    if silent:
        raise AttachSiteError(
            f'{owner}: {len(silent)} of {len(sites)} adapters never run in '
            f'the forward: {_some(silent)}. Their module does not call it '
            '(e.g. it computes F.linear(x, qkv.weight, ...) itself): name the '
            'enclosing module with its bias sink instead, e.g. targets=dict('
            "attn=dict(module=r'...attn', linear='qkv', bias_sink=('q_bias',"
            " None, 'v_bias')))")
    errors = {}
    for index, (path, site) in enumerate(sites.items()):
        if getattr(site, 'fold_target', None) is None:
            continue
        errors[path] = fold_error(site, *captured[path], seed=index)
    wrong = [path for path, error in errors.items() if not error <= tolerance]
    if wrong:
        raise AttachSiteError(
            f'{owner}: folding does not reproduce {len(wrong)} site(s): '
            + ', '.join(f'{p} (relative error {errors[p]:.2g})'
                        for p in wrong[:3]) + (' ...' if len(wrong) > 3
                                               else '') +
            '. The module must apply the fold weight to the adapted input '
            'and nothing else, and a bias chunk named None must be one its '
            'output ignores: fix weight=/bias_sink=/inputs= of the site, or '
            'give it shift=False')
    return errors


def _some(paths: List[str], shown: int = 4) -> str:
    more = len(paths) - shown
    return ', '.join(paths[:shown]) + (f' (+{more} more)' if more > 0 else '')


def first_forward_pre_hook(wrapper: nn.Module, args: tuple,
                           kwargs: dict) -> None:
    """Run :func:`check_sites` on the first training-mode forward of an
    adapter wrapper, on the batch's first sample; a no-op afterwards."""
    if wrapper.sites_checked or not wrapper.training:
        return None
    check_sites(
        wrapper.backbone,
        *first_sample(args),
        owner=type(wrapper).__name__,
        **first_sample(kwargs))
    wrapper.sites_checked = True
    return None

