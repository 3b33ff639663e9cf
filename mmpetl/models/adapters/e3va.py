# Copyright (c) mmpetl contributors. All rights reserved.
"""E3VA: low-rank adapters on a gradient highway parallel to a frozen Swin.

E3VA (Yin et al., ACM MM 2024) trains dense-prediction models without
back-propagating through the frozen backbone. No reference code exists; the
choices below are ours (stated in the README's fidelity section too).

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
"""
import re
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from mmengine.model import BaseModule
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_backbone import FrozenBackbone
from ..attach_sites import site_patterns

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


class _Tap:
    """Forward pre-hook that stores argument ``index`` under ``key``.

    An object rather than a closure so that ``copy.deepcopy`` of the wrapper
    gives the copy hooks that fill the copy's store.
    """

    def __init__(self, store: dict, key: str, index: int):
        self.store, self.key, self.index = store, key, index

    def __call__(self, module: nn.Module, args: tuple) -> None:
        self.store[self.key] = args[self.index]


class HighwayStage(BaseModule):
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

    See the module docstring for the formula and design choices.

    Args:
        backbone (dict): Config of the stock mmseg / mmdet Swin.
        rank (int): Rank ``r`` of the dual low-rank adapters. Defaults to 46
            (1,199,104 trainable parameters for Swin-B, the paper's 1.2M).
        taps (dict, optional): Patterns like :data:`HIGHWAY_TAPS`' entries
            (keys ``stage``, ``attn``, ``mlp``, ``downsample``, each with a
            named group ``stage``), for a backbone the table does not know.
            The backbone must list its stage widths in ``num_features`` and
            its outputs in ``out_indices``.
        save_frozen (bool): See :class:`FrozenBackbone`.
        init_cfg (dict, optional): See :class:`FrozenBackbone`.
    """

    def __init__(self,
                 backbone: dict,
                 rank: int = 46,
                 taps: Optional[Dict[str, str]] = None,
                 save_frozen: bool = False,
                 init_cfg: Optional[dict] = None):
        self.rank = rank
        self.taps = taps
        super().__init__(backbone, save_frozen=save_frozen, init_cfg=init_cfg)

    def attach_adapters(self) -> None:
        """Build the highway next to the backbone and hook the taps."""
        patterns = self.taps or site_patterns(self.backbone,
                                              HIGHWAY_TAPS, 'taps')
        compiled = {k: re.compile(p) for k, p in patterns.items()}
        out_indices = tuple(self.backbone.out_indices)
        self.highway_stages = max(out_indices) + 1
        tap_paths: Dict[int, List[str]] = {}
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
                if kind == 'stage':
                    module.register_forward_pre_hook(
                        _Tap(self._capture, f'hw{stage}', 1))
                elif kind == 'downsample':
                    self._downsample_paths[stage] = path
                else:
                    tap_paths.setdefault(stage, []).append(path)
                    module.register_forward_pre_hook(
                        _Tap(self._capture, path, 0))
        for stage in range(self.highway_stages):
            if not tap_paths.get(stage):
                raise ValueError(f'E3VA found no attention/MLP taps in stage '
                                 f'{stage} of {type(self.backbone).__name__}')
            if stage > 0 and stage - 1 not in self._downsample_paths:
                raise ValueError(f'E3VA found no patch merging after stage '
                                 f'{stage - 1}')
        self._tap_paths = tap_paths
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
        for out, index in zip(backbone_outs, self.out_indices):
            z = self.highway_norms[f'stage{index}'](highway[index])
            batch, channels, height, width = out.shape
            z = z.transpose(1, 2).reshape(batch, channels, height, width)
            outs.append(out + z)
        return tuple(outs)

    def _run_highway(self) -> List[Tensor]:
        states: List[Tensor] = []
        for stage, adapters in enumerate(self.highway):
            taps = [self._capture[path] for path in self._tap_paths[stage]]
            z = adapters(taps)
            if stage > 0:
                merge = self.backbone.get_submodule(
                    self._downsample_paths[stage - 1])
                merged, _ = merge(states[-1], self._capture[f'hw{stage - 1}'])
                z = z + merged
            states.append(z)
        return states
