# Copyright (c) mmpetl contributors. All rights reserved.
"""E3VA: low-rank adapters on a gradient highway parallel to a frozen Swin.

E3VA (Yin et al., ACM MM 2024) trains dense-prediction models without
back-propagating through the frozen backbone. No reference code exists; the
choices below are ours (stated on the method's docs page,
``docs/en/methods/e3va.md``, too).

The frozen Swin runs its whole forward under ``torch.no_grad()``: it builds
no autograd graph, so none of its activations is kept for backward and no
gradient reaches any of its parameters. Forward pre-hooks on the modules of
:data:`HIGHWAY_TAPS` copy out, per block, the W-MSA/SW-MSA output and the MLP
output, each *before drop-path and the residual add* (the input of the
branch's drop-path module, tokens ``(B, H*W, C)``); they carry no graph.

The highway keeps one token state per stage ``s`` (``(B, H_s*W_s, C_s)``)::

    z_0 = U_0 sum_j GELU(D_j a_j)
    z_s = P_{s-1}(z_{s-1}) + U_s sum_j GELU(D_j a_j)          (s > 0)
    out_s = N_s(x_s) + LN_s(z_s)

* ``a_j``: the tapped activations of stage ``s`` (two per block: attention,
  MLP). The adapters are *parallel*, all fed by the frozen backbone, and
  summed: the backward path of every adapter is one down-projection, the
  stage's up-projection and the highway's down-sampling, never a backbone
  block.
* "Dual low-rank" adapter: the ``d x d`` map of adapter ``j`` is
  ``U_s GELU(D_j .)`` with a private rank-``r`` down-projection
  ``D_j`` (``r x d``, no bias) and an up-projection ``U_s`` (``d x r``, no
  bias) shared by the adapters of the stage. Because the adapters are summed,
  sharing ``U_s`` is the same as summing in the rank-``r`` code: it halves the
  parameters of a plain low-rank adapter and runs one up-projection per stage
  instead of one per adapter.
* ``P_{s-1}``: the backbone's own patch merging of stage ``s-1`` (norm +
  linear), *shared and frozen*: applied to highway tokens with gradients
  flowing to the highway but none into its weights. A trainable copy would
  cost 2.75M parameters in Swin-B (more than twice the paper's 1.2M budget).
* ``N_s(x_s)``: the frozen backbone's output of stage ``s`` after its output
  norm (computed without a graph). ``LN_s``: a trainable LayerNorm whose
  weight and bias start at zero, so that the model starts as exactly the
  frozen backbone (while ``D_j``, ``U_s`` are random: with gamma nonzero after
  the first step, all of them train).

Trainable parameters, per stage up to the last output stage (``n_s`` blocks of
width ``d_s``, rank ``r``): ``2 n_s r d_s`` (down) ``+ r d_s`` (up) ``+ 2 d_s``
(LN, output stages only). Swin-B (``d = 128, 256, 512, 1024``, depths
``2, 2, 18, 2``) with the default ``r = 46``: 1,106,944 + 88,320 + 3,840 =
**1,199,104**, the paper's 1.20M besides neck and heads.

Memory modes (``memory``, per highway stage; gradients are exact in all):

* ``'keep'`` (default): autograd keeps what the highway reads, the taps
  ``a_j`` above all (the weight gradient of ``D_j`` is ``g_j^T a_j``).
* ``'autocast'``: under mixed precision, the hooks store each tap in the
  autocast dtype, the dtype the down-projection casts it to anyway (same
  values, same gradients). Without autocast it is ``'keep'``; Swin's taps
  leave a linear and are already in the autocast dtype, so there the two
  keep the same bytes (the mode is for backbones whose taps leave
  full-precision ops).
* ``'recompute'``: a run of consecutive recomputed stages keeps only the
  input ``x_s`` of its first stage (one tap's size) and the highway state
  entering the run; its forward builds no graph. In the backward the run's
  frozen stages are re-run from ``x_s`` under ``no_grad``, each with the
  same hooks, RNG state (so drop-path draws the same masks) and autocast
  state, which regenerates their taps and the next stage's input bit for
  bit, then the run's highway stages are re-run with a graph for their
  gradients (``_RecomputedTaps``). The price is one more
  forward of those frozen stages (with their patch merging); stages 0-1 of
  Swin-B hold 43% of the highway's saved bytes for about 17% of its FLOPs.
"""
import re
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_backbone import AttachSite, BackboneArg, FrozenBackbone
from ..attach_sites import site_patterns
from ..petl import PETLModule

_SWIN_TAPS = dict(
    stage=r'stages\.(?P<stage>\d+)',
    attn=r'stages\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.attn\.drop',
    mlp=r'stages\.(?P<stage>\d+)\.blocks\.(?P<block>\d+)\.ffn\.dropout_layer',
    downsample=r'stages\.(?P<stage>\d+)\.downsample')

#: ``'<package>.<ClassName>'`` -> module path patterns of: each stage (its
#: input ``(x, hw_shape)`` gives the token grid), the module whose *input*
#: is the attention / MLP activation to tap, and the stage's patch merging.
HIGHWAY_TAPS: Dict[str, Dict[str, str]] = {
    'mmseg.SwinTransformer': _SWIN_TAPS,
    'mmdet.SwinTransformer': _SWIN_TAPS,
}

#: What the highway keeps for the backward of a stage (see E3VABackbone).
MEMORY_MODES = ('keep', 'autocast', 'recompute')


def _autocast_dtype(tensor: Tensor) -> Optional[torch.dtype]:
    """The autocast dtype active for ``tensor``'s device, or None."""
    device = tensor.device.type
    if not torch.is_autocast_enabled(device):
        return None
    return torch.get_autocast_dtype(device)


class _Tap:
    """Forward pre-hook that stores argument ``index`` under ``key``.

    With ``cast`` (memory mode ``'autocast'``), a floating-point tap is
    stored in the autocast dtype when autocast is on, the dtype the highway's
    down-projection would cast it to anyway. An object rather than a closure
    so that ``copy.deepcopy`` of the wrapper gives the copy hooks that fill
    the copy's store.
    """

    def __init__(self, store: dict, key: str, index: int,
                 cast: bool = False):
        self.store, self.key, self.index, self.cast = store, key, index, cast

    def __call__(self, module: nn.Module, args: tuple) -> None:
        tensor = args[self.index]
        dtype = _autocast_dtype(tensor) if self.cast else None
        if dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(dtype)
        self.store[self.key] = tensor


class _StageInput:
    """Forward pre-hook that stores a stage's arguments ``(x, hw_shape)``
    and, for a recomputed stage, the RNG state its forward starts from (so
    that drop-path draws the same masks when the stage is re-run)."""

    def __init__(self, store: dict, key: str, rng: bool = False):
        self.store, self.key, self.rng = store, key, rng

    def __call__(self, module: nn.Module, args: tuple) -> None:
        rng = None
        if self.rng:
            device = args[0].device
            rng = (torch.get_rng_state(), torch.cuda.get_rng_state(device)
                   if device.type == 'cuda' else None)
        self.store[self.key] = (args, rng)


class _RecomputedTaps(torch.autograd.Function):
    """Highway stages whose taps are regenerated in the backward.

    ``forward(plan, z_prev, x_s, *params)`` runs ``plan.run(z_prev, taps)``
    on the captured taps without a graph and saves only ``z_prev`` and the
    input ``x_s`` (``(B, N_s, C_s)``, one tap's size) of the run's first
    stage. ``backward`` re-runs the frozen stages one after the other from
    ``x_s`` under ``no_grad`` (same RNG states, same autocast state: the
    same taps and stage inputs, bit for bit), re-runs the highway stages
    with a graph and returns the gradients of ``z_prev`` and the highway
    parameters.
    """

    @staticmethod
    def forward(ctx, plan, z_prev, first_input, *params):
        ctx.plan = plan
        device = first_input.device.type
        ctx.autocast = (device, torch.is_autocast_enabled(device),
                        torch.get_autocast_dtype(device))
        ctx.save_for_backward(z_prev, first_input)
        outputs = plan.run(z_prev, plan.captured)
        plan.captured = None  # keep no reference to the taps
        return outputs

    @staticmethod
    def backward(ctx, *grads):
        plan = ctx.plan
        z_prev, first_input = ctx.saved_tensors
        params = list(plan.params)
        device, enabled, dtype = ctx.autocast
        with torch.enable_grad(), torch.autocast(device, dtype=dtype,
                                                 enabled=enabled):
            taps = plan.regenerate(first_input)
            leaf = None
            if z_prev is not None:
                leaf = z_prev.detach().requires_grad_(
                    ctx.needs_input_grad[1])
            outputs = plan.run(leaf, taps)
        pairs = [(o, g) for o, g in zip(outputs, grads)
                 if g is not None and o.requires_grad]
        wanted = ([leaf] if leaf is not None and leaf.requires_grad else
                  []) + params
        found = torch.autograd.grad(
            [o for o, _ in pairs], wanted, [g for _, g in pairs],
            allow_unused=True) if pairs else [None] * len(wanted)
        grad_z = found[0] if wanted and wanted[0] is leaf else None
        grad_params = list(found[len(wanted) - len(params):])
        return (None, grad_z, None) + tuple(grad_params)


class _SegmentPlan:
    """What ``_RecomputedTaps`` needs about a run of recomputed
    stages: how to run them, regenerate their taps, and their parameters."""

    def __init__(self, owner: 'E3VABackbone', stages: Sequence[int],
                 captured: Dict[int, List[Tensor]],
                 hw_shapes: Dict[int, tuple], stage_args: dict):
        self.owner, self.stages = owner, tuple(stages)
        self.captured, self.hw_shapes = captured, hw_shapes
        self.stage_args = stage_args  # stage -> (args[1:], RNG state)
        self.params = [
            p for s in self.stages for p in owner.stage_parameters(s)
        ]

    def run(self, z_prev, taps):
        return self.owner._highway_stages(self.stages, z_prev, taps,
                                          self.hw_shapes)

    def regenerate(self, x):
        """The taps of the run's stages, from its first stage's input."""
        taps = {}
        for s in self.stages:
            taps[s], x = self.owner._regenerate_taps(s, x,
                                                     *self.stage_args[s])
        return taps


class HighwayStage(BaseModule, PETLModule):
    """The adapters of one stage: ``U sum_j GELU(D_j a_j)``.

    Args:
        embed_dims (int): Width ``d`` of the stage.
        num_taps (int): Number of tapped activations ``a_j`` (two per block).
        rank (int): Rank ``r`` of the adapters.

    Shapes: each ``a_j`` is ``(B, N, d)``; the output is ``(B, N, d)``.
    """

    def __init__(self, embed_dims: int, num_taps: int, rank: int):
        super().__init__()
        self.down = nn.ModuleList(
            nn.Linear(embed_dims, rank, bias=False) for _ in range(num_taps))
        self.up = nn.Linear(rank, embed_dims, bias=False)

    def forward(self, taps: List[Tensor]) -> Tensor:
        if len(taps) != len(self.down):
            raise RuntimeError(f'expected {len(self.down)} tapped '
                               f'activations, got {len(taps)}')
        code = sum(F.gelu(down(a)) for down, a in zip(self.down, taps))
        return self.up(code)


@MODELS.register_module()
class E3VABackbone(FrozenBackbone):
    """A frozen Swin run without autograd, plus a trainable highway.

    See the module docstring for the formula, the design choices and the
    memory modes.

    Args:
        backbone (dict | nn.Module): The stock mmseg / mmdet Swin,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        rank (int): Rank ``r`` of the dual low-rank adapters. Defaults to 46
            (1,199,104 trainable parameters for Swin-B, the paper's 1.2M).
        memory (str | Sequence[str]): What the highway keeps for its
            backward, one of :data:`MEMORY_MODES` for every highway stage,
            or one per highway stage (e.g. ``('recompute', 'recompute',
            'keep', 'keep')``). Defaults to ``'keep'``.
        taps (dict, optional): Patterns like :data:`HIGHWAY_TAPS`' entries
            (keys ``stage``, ``attn``, ``mlp``, ``downsample``, each with a
            named group ``stage``), for a backbone the table does not know.
            The backbone must list its stage widths in ``num_features`` and
            its outputs in ``out_indices``; a stage is called as
            ``stage(x, *rest)`` with its tokens ``x`` first.
        save_frozen (bool): See :class:`FrozenBackbone`.
        init_cfg (dict, optional): See :class:`FrozenBackbone`.
    """

    def __init__(self,
                 backbone: BackboneArg,
                 rank: int = 46,
                 memory: Union[str, Sequence[str]] = 'keep',
                 taps: Optional[Dict[str, str]] = None,
                 save_frozen: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(
            backbone,
            save_frozen=save_frozen,
            init_cfg=init_cfg,
            settings=dict(rank=rank, memory=memory, taps=taps))

    #: The backbone runs without autograd: nothing to keep checkpointing
    #: from cutting.
    backprop_through_backbone = False

    def merge_blockers(self) -> List[str]:
        """E3VA never folds: its trained highway runs beside the backbone."""
        return [
            'E3VABackbone keeps its trained highway (low-rank adapters and '
            'output norms) beside the frozen Swin: it does not fold into the '
            'stock backbone; deploy the adapter checkpoint with its mmpetl '
            'config'
        ]

    def _memory_modes(self) -> Tuple[str, ...]:
        """``self.memory`` as one mode per highway stage (checked)."""
        count = self.highway_stages
        modes = ((self.memory, ) * count
                 if isinstance(self.memory, str) else tuple(self.memory))
        if len(modes) != count or any(m not in MEMORY_MODES for m in modes):
            raise ValueError(
                f'E3VA memory must be one of {MEMORY_MODES} or a list of '
                f'{count} of them (one per highway stage), got '
                f'{self.memory!r}')
        return modes

    def build_shared(self, sites: List[AttachSite]) -> None:
        """Build the highway next to the backbone and hook the taps (no
        site: ``sites`` is empty)."""
        patterns = self.taps or site_patterns(self.backbone,
                                              HIGHWAY_TAPS, 'taps')
        compiled = {k: re.compile(p) for k, p in patterns.items()}
        out_indices = tuple(self.backbone.out_indices)
        self.highway_stages = max(out_indices) + 1
        self.memory_modes = self._memory_modes()
        tap_paths: Dict[int, List[str]] = {}
        self._stage_paths: Dict[int, str] = {}
        self._downsample_paths: Dict[int, str] = {}
        self._capture: Dict[str, object] = {}
        for path, module in self.backbone.named_modules():
            for kind, pattern in compiled.items():
                match = pattern.fullmatch(path)
                if match is None:
                    continue
                stage = int(match.group('stage'))
                if stage >= self.highway_stages:
                    continue
                mode = self.memory_modes[stage]
                if kind == 'stage':
                    self._stage_paths[stage] = path
                    module.register_forward_pre_hook(
                        _StageInput(self._capture, f'stage{stage}',
                                    rng=mode == 'recompute'))
                elif kind == 'downsample':
                    self._downsample_paths[stage] = path
                else:
                    tap_paths.setdefault(stage, []).append(path)
                    module.register_forward_pre_hook(
                        _Tap(self._capture, path, 0,
                             cast=mode == 'autocast'))
        for stage in range(self.highway_stages):
            if not tap_paths.get(stage) or stage not in self._stage_paths:
                raise ValueError(f'E3VA found no attention/MLP taps in stage '
                                 f'{stage} of {type(self.backbone).__name__}')
            if stage > 0 and stage - 1 not in self._downsample_paths:
                raise ValueError(f'E3VA found no patch merging after stage '
                                 f'{stage - 1}')
        self._tap_paths = tap_paths
        # Consecutive stages with the same recompute choice run together.
        self._segments: List[Tuple[Tuple[int, ...], bool]] = []
        for stage, mode in enumerate(self.memory_modes):
            recompute = mode == 'recompute'
            if self._segments and self._segments[-1][1] == recompute:
                self._segments[-1] = (self._segments[-1][0] + (stage, ),
                                      recompute)
            else:
                self._segments.append(((stage, ), recompute))
        # Stage widths: mmseg's and mmdet's Swin list them in num_features.
        stage_dims = list(self.backbone.num_features)
        self.highway = nn.ModuleList(
            HighwayStage(stage_dims[s], len(tap_paths[s]), self.rank)
            for s in range(self.highway_stages))
        self.highway_norms = nn.ModuleDict({
            f'stage{i}': nn.LayerNorm(stage_dims[i])
            for i in out_indices
        })
        for norm in self.highway_norms.values():
            nn.init.zeros_(norm.weight)
            nn.init.zeros_(norm.bias)
        self.out_indices = out_indices

    def outputs_own_parameters(self) -> bool:
        """True with several outputs: ``LN_s`` reaches output ``s`` only."""
        return len(self.out_indices) > 1

    def stage_parameters(self, stage: int) -> List[nn.Parameter]:
        """Trainable parameters of highway stage ``stage`` and its norm."""
        modules = [self.highway[stage]]
        if stage in self.out_indices:
            modules.append(self.highway_norms[f'stage{stage}'])
        return [
            p for m in modules for p in m.parameters() if p.requires_grad
        ]

    def forward(self, inputs: Tensor) -> Tuple[Tensor, ...]:
        """``inputs`` ``(B, 3, H, W)`` -> one ``(B, C_i, H_i, W_i)`` map per
        out index, as the stock backbone returns."""
        self._capture.clear()
        try:
            with torch.no_grad():
                backbone_outs = self.backbone(inputs)
            highway = self._run_highway()
        finally:
            # Drop the references to the backbone's activations.
            self._capture.clear()
        outs = []
        for out, z in zip(backbone_outs, highway):
            batch, channels, height, width = out.shape
            z = z.transpose(1, 2).reshape(batch, channels, height, width)
            outs.append(out + z)
        return tuple(outs)

    def _run_highway(self) -> List[Tensor]:
        """``LN_s(z_s)`` ``(B, N_s, C_s)`` for each out index, stage by
        stage; runs of recomputed stages through ``_RecomputedTaps``.
        """
        inputs = {
            s: self._capture[f'stage{s}']
            for s in range(self.highway_stages)
        }
        hw_shapes = {s: args[1] for s, (args, _) in inputs.items()}
        z, normed = None, []
        for stages, recompute in self._segments:
            taps = {
                s: [self._capture[p] for p in self._tap_paths[s]]
                for s in stages
            }
            if recompute and torch.is_grad_enabled():
                plan = _SegmentPlan(self, stages, taps, hw_shapes, {
                    s: (inputs[s][0][1:], inputs[s][1])
                    for s in stages
                })
                del taps
                outputs = _RecomputedTaps.apply(plan, z,
                                                inputs[stages[0]][0][0],
                                                *plan.params)
            else:
                outputs = self._highway_stages(stages, z, taps, hw_shapes)
            z = outputs[0]
            normed.extend(outputs[1:])
        return normed

    def _highway_stages(self, stages: Sequence[int], z: Optional[Tensor],
                        taps: Dict[int, List[Tensor]],
                        hw_shapes: Dict[int, tuple]) -> Tuple[Tensor, ...]:
        """Highway stages ``stages`` from ``z`` (``z_{s-1}``, None before
        stage 0) -> ``(z_last, *LN_s(z_s) of the out stages among them)``."""
        normed = []
        for stage in stages:
            update = self.highway[stage](taps[stage])
            if z is not None:
                merge = self.backbone.get_submodule(
                    self._downsample_paths[stage - 1])
                merged, _ = merge(z, hw_shapes[stage - 1])
                update = update + merged
            z = update
            if stage in self.out_indices:
                normed.append(self.highway_norms[f'stage{stage}'](z))
        return (z, *normed)

    def _regenerate_taps(self, stage: int, x: Tensor, rest: tuple,
                         rng: Optional[tuple]
                         ) -> Tuple[List[Tensor], Tensor]:
        """Re-run frozen stage ``stage`` on its input ``x`` without a graph,
        from the RNG state of its first run; returns its taps and its output
        (the next stage's input, after patch merging)."""
        module = self.backbone.get_submodule(self._stage_paths[stage])
        devices = [x.device] if x.device.type == 'cuda' else []
        with torch.random.fork_rng(devices=devices), torch.no_grad():
            torch.set_rng_state(rng[0])
            if rng[1] is not None:
                torch.cuda.set_rng_state(rng[1], x.device)
            try:
                out = module(x, *rest)[0]
                return [self._capture[p] for p in self._tap_paths[stage]], out
            finally:
                self._capture.clear()
