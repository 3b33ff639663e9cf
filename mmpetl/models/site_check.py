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
   (:class:`AffineStandIn`); on the site's first input ``x`` of that
   forward, ``module(a(x))`` must equal the folded module on ``x`` to
   ``tolerance`` (relative).

It costs one forward of the backbone on the batch (in evaluation mode, set
through the modules' own ``train()``) and two forwards per site module, in
float64 with autocast off. :class:`AdapterBackbone` runs it
once, on its first training-mode forward (before the first optimizer step;
inside DDP and AMP alike), or at build time on request.
"""
import logging
from contextlib import ExitStack, contextmanager
from functools import partial
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import torch
from mmengine.logging import print_log
from torch import Tensor, nn

from ..utils.errors import InputError
from .mergeable_adapter import AffineStandIn  # noqa: F401 (re-exported)
from .petl import adapted_sites


class AttachSiteError(InputError, RuntimeError):
    """An adapter that does not run, does not fold exactly, or gets no
    gradient."""


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


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """``module`` in evaluation mode, through the modules' own ``train()``
    (some keep state there: LeViT's attention caches its bias in
    ``train(False)``), and every module's mode restored the same way."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        # Parents first: a parent's train() sets its subtree, whose
        # members are then set back one by one.
        for m, mode in modes:
            if m.training != mode:
                m.train(mode)


@torch.no_grad()
def _run_and_fold(backbone: nn.Module, sites: Dict[str, nn.Module],
                  args: tuple, kwargs: dict,
                  mode_module: nn.Module) -> Tuple[set, dict]:
    """Run ``backbone`` in eval mode, autocast off; return the adapted
    sites that ran and, for each mergeable one, its fold error on its
    first input of that forward (checked there, so that no input is
    kept)."""
    ran, errors = set(), {}
    device = next((t.device for t in output_tensors((args, kwargs))),
                  torch.device('cpu'))
    with ExitStack() as stack:
        for index, (path, module) in enumerate(sites.items()):

            def check(module, a, k, path=path, seed=index):
                if path in errors or module.not_mergeable_reason() is not None:
                    return
                # Marked first: the probe, a copy, carries this hook too.
                errors[path] = float('inf')
                errors[path] = fold_error(module, a, k, seed=seed)

            def mark(module, a, out, path=path):
                ran.add(path)

            stack.callback(
                module.register_forward_pre_hook(
                    check, with_kwargs=True).remove)
            stack.callback(module.adapter.register_forward_hook(mark).remove)
        stack.enter_context(torch.autocast(device.type, enabled=False))
        stack.enter_context(eval_mode(mode_module))
        backbone(*args, **kwargs)
    return ran, errors


@torch.no_grad()
def fold_error(site: nn.Module, args: tuple, kwargs: dict,
               seed: int = 0) -> float:
    """Relative difference between the site's fold probe
    (:meth:`~mmpetl.models.AdaptedSite.fold_probe`: float64, random adapter
    values) and its folded module, on ``site``'s input ``(args, kwargs)``."""
    probe = site.fold_probe(seed)
    args, kwargs = _map_tensors(_to_double, (args, kwargs))
    expected = probe(*args, **kwargs)
    merged = probe.merged()
    merged.eval()
    return relative_difference(expected, merged(*args, **kwargs))


def check_sites(backbone: nn.Module,
                *args,
                tolerance: float = 1e-6,
                owner: str = 'adapter wrapper',
                form: str = 'input',
                mode_module: Optional[nn.Module] = None,
                kinds: Optional[Dict[str, str]] = None,
                **kwargs) -> Dict[str, float]:
    """Prove that every adapter in ``backbone`` runs on ``backbone(*args,
    **kwargs)`` and that every mergeable one folds exactly.

    Args:
        backbone (nn.Module): The backbone holding adapted modules.
        *args: The backbone's positional input.
        **kwargs: Its keyword input.
        tolerance (float): Largest relative fold error (float64).
        owner (str): Who checks, for the error message.
        form (str): The sites' fold form, for the fix the message gives.
        mode_module (nn.Module, optional): The module whose ``train()``
            sets the modes (the wrapper, which re-applies what stays
            frozen: a backbone's own ``train()`` may freeze stages).
            Defaults to ``backbone``.
        kinds (dict, optional): ``{site path: site kind}``, for the fix the
            message gives.

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
        return _check_sites(backbone, args, kwargs, tolerance, owner, form,
                            mode_module or backbone, kinds or {})


def _check_sites(backbone: nn.Module, args: tuple, kwargs: dict,
                 tolerance: float, owner: str, form: str,
                 mode_module: nn.Module,
                 kinds_of: Dict[str, str]) -> Dict[str, float]:
    sites = adapted_sites(backbone)
    ran, errors = _run_and_fold(backbone, sites, args, kwargs, mode_module)
    silent = [path for path in sites if path not in ran]
    if silent and form == 'input':
        raise AttachSiteError(
            f'{owner}: {len(silent)} of {len(sites)} adapters never run in '
            f'the forward: {_some(silent)}. Their module does not call it '
            '(e.g. it computes F.linear(x, qkv.weight, ...) itself): name the '
            'enclosing module with its bias sink instead, e.g. targets=dict('
            "attn=dict(module=r'...attn', linear='qkv', bias_sink=('q_bias',"
            " None, 'v_bias')))")
    if silent:
        kinds = sorted({kinds_of.get(p, 'kind') for p in silent})
        raise AttachSiteError(
            f'{owner}: {len(silent)} of {len(sites)} adapters never run in '
            f'the forward: {_some(silent)}. The backbone does not call '
            f'their module with these options: leave site kind(s) {kinds} '
            'out with sites=, or name the modules it runs with '
            f'targets=dict({kinds[0]}=regex)')
    for index, (path, site) in enumerate(sites.items()):
        # A linear whose block reads its weight is never called: its fold
        # is checked on an input of its own (DeltaWeightLinear).
        if path not in errors and hasattr(site, 'probe_input') and \
                site.not_mergeable_reason() is None:
            errors[path] = fold_error(site, *site.probe_input(), seed=index)
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


def _require_grad(t: Tensor) -> Tensor:
    if t.is_floating_point() and not t.requires_grad:
        return t.detach().requires_grad_()
    return t


def prepare_inputs(wrapper: nn.Module, args: tuple, kwargs: dict):
    """The inputs of a training forward: with gradient checkpointing in
    the backbone (``wrapper.checkpointing``), floating-point inputs require
    grad, so that a checkpointed block whose inputs come from frozen
    layers still passes gradients to the adapters inside it (reentrant
    checkpointing only does when an input requires grad)."""
    if not wrapper.checkpointing:
        return args, kwargs
    return _map_tensors(_require_grad, (args, kwargs))


def _mark_reached(reached: set, module: nn.Module, args: tuple,
                  output: Any) -> None:
    """Forward hook: mark ``module`` reached when a gradient flows into its
    output (also when a checkpointed block recomputes it in backward)."""
    for t in output_tensors(output):
        if t.requires_grad:
            t.register_hook(lambda grad: reached.add(id(module)))


def check_trainable_reached(wrapper: nn.Module, args: tuple, kwargs: dict,
                            owner: str = 'adapter wrapper') -> None:
    """Prove that every trainable parameter of ``wrapper``, and every slice
    of the shared ones, gets a gradient from its outputs.

    Runs ``wrapper.forward`` once in its current mode with autograd on and
    back-propagates the sum of the outputs; the parameters' ``.grad``
    fields are cleared for it and restored after, so the training step is
    unchanged. A parameter autograd does not reach at all is one that
    training would never change, while it counts as trainable: gradient
    checkpointing that cuts the graph, blocks after the last of
    ``out_indices``, reversible blocks that recompute without it. A shared
    parameter made of slices that one module each uses
    (``wrapper.parameter_slices()``: VPT-deep's prompt set per layer,
    FacT-TK's columns per matrix) is reached as a whole as soon as one
    slice is: each slice whose module's output gets no gradient, and whose
    gradient is zero, is refused too. Only a stock parameter a
    parameter-selection method names (BitFit, LN-tuning) in a module the
    forward never runs (DeiT3's ``ln2``) is a warning. RNG states are left
    as they were.

    Raises:
        AttachSiteError: One line naming the unreached parameters (or
            slices), the likely causes and the wrapper's fix
            (``wrapper.unreached_fix``).
    """
    trains = wrapper.trainable_parameter_names()
    params = [(n, p) for n, p in wrapper.named_parameters()
              if p.requires_grad and n in trains]
    if not params:
        return
    slices = wrapper.parameter_slices()
    devices = sorted({t.device.index for t in output_tensors((args, kwargs))
                      if t.is_cuda})
    args, kwargs = prepare_inputs(wrapper, args, kwargs)
    ran, reached = set(), set()
    # With gradient checkpointing a real backward (reentrant checkpointing
    # does not support autograd.grad), into cleared .grad fields restored
    # afterwards.
    # (Not FSDP's views of its flat parameters: they have no .grad field.)
    leaves = [p for _, p in params if p.is_leaf]
    stashed = [p.grad for p in leaves]
    for p in leaves:
        p.grad = None
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), \
                ExitStack() as stack:
            for path, module in wrapper.named_modules():
                stack.callback(module.register_forward_hook(
                    lambda m, a, o, path=path: ran.add(path)).remove)
            for module in {id(m): m for parts in slices.values()
                           for _, _, m in parts}.values():
                stack.callback(module.register_forward_hook(
                    partial(_mark_reached, reached)).remove)
            outputs = [
                t for t in output_tensors(wrapper.forward(*args, **kwargs))
                if t.requires_grad
            ]
            loss = sum(t.float().sum() for t in outputs) if outputs \
                else None
            if loss is None:
                grads = [None] * len(params)
            elif getattr(wrapper, 'checkpointing', False):
                for _, p in params:
                    if not p.is_leaf:
                        p.retain_grad()
                loss.backward()
                grads = [p.grad for _, p in params]
            else:
                # autograd.grad runs no AccumulateGrad node, so no hook of
                # DDP or FSDP, whose forward this runs inside, fires.
                grads = torch.autograd.grad(
                    loss, [p for _, p in params], allow_unused=True)
        grads = {n: g for (n, _), g in zip(params, grads)}
    finally:
        for p, grad in zip(leaves, stashed):
            p.grad = grad
    unreached = [n for n, g in grads.items() if g is None]
    # A stock module that the stock forward never runs (DeiT3's ln2) keeps
    # a selected stock parameter (BitFit, LN-tuning) unchanged: say so.
    selected = {f'backbone.{n}' for n in wrapper.selected_parameters()}
    dead = [n for n in unreached
            if n in selected and n.rpartition('.')[0] not in ran]
    if dead:
        print_log(
            f'{owner}: {_some(dead)} never run in the forward of '
            f'{type(wrapper.backbone).__name__} (so they cannot train)',
            logger='current', level=logging.WARNING)
    unreached = [n for n in unreached if n not in dead]
    unreached += [
        f'{name}[{label}]' for name, parts in slices.items()
        if grads.get(name) is not None for label, index, module in parts
        if id(module) not in reached and not grads[name][index].any()
    ]
    if unreached:
        raise AttachSiteError(
            f'{owner}: {len(unreached)} trainable parameter(s) or slices '
            f'get no gradient from the backbone outputs: {_some(unreached)}. '
            'Something cuts them off the graph (blocks after the last of '
            'out_indices, a reversible backbone, or a backbone option that '
            f'detaches its blocks): {wrapper.unreached_fix}')


def first_forward_pre_hook(wrapper: nn.Module, args: tuple,
                           kwargs: dict) -> Optional[tuple]:
    """On training-mode forwards of a :class:`FrozenBackbone`: prepare the
    inputs (:func:`prepare_inputs`) and, the first time, run its checks
    (``wrapper.check_trainable``) on the batch (whole: a backbone may hold
    state sized to it, as SparK's mask in SparseConvNeXt)."""
    if not wrapper.training:
        return None
    args, kwargs = prepare_inputs(wrapper, args, kwargs)
    if not wrapper.trainable_checked:
        wrapper.check_trainable(*args, **kwargs)
    return args, kwargs
