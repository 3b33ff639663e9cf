# Copyright (c) mmpetl contributors. All rights reserved.
import math
from collections import OrderedDict
from typing import Any, Dict, List, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..petl import PETLModule
from ..weight_delta import WeightDelta

#: FacT's sites: every linear of a block.
FACT_SITES = ('qkv', 'proj', 'fc1', 'fc2')
FACT_MODES = ('tt', 'tk')


class FacTFactors(PETLModule):
    """The factors FacT shares between the weight increments of a width
    ``d``: ``U`` (r x d, nn.Linear's init), ``V`` (d x r, zero) and, for
    FacT-TK, the core tensor ``C`` (r x r x r) and the per-matrix factor
    ``P`` (r x n, one column per d x d matrix), both xavier-uniform, as
    JieShibo/PETL-ViT initialises them.

    Args:
        width (int): ``d``.
        rank (int): ``r``.
        columns (int): ``n``, the number of d x d matrices (TK); 0 for TT.
    """

    def __init__(self, width: int, rank: int, columns: int = 0):
        super().__init__()
        self.u = nn.Parameter(torch.empty(rank, width))
        nn.init.kaiming_uniform_(self.u, a=math.sqrt(5))
        self.v = nn.Parameter(torch.zeros(width, rank))
        self.core = self.p = None
        if columns:
            self.core = nn.Parameter(torch.empty(rank, rank, rank))
            self.p = nn.Parameter(torch.empty(rank, columns))
            nn.init.xavier_uniform_(self.core)
            nn.init.xavier_uniform_(self.p)


class FacTDelta(WeightDelta):
    r"""FacT's weight increment of one linear.

    `FacT: Factor-Tuning for Lightweight Adaptation on Vision Transformer
    <https://arxiv.org/abs/2212.03145>`_ (Jie and Deng, AAAI 2023). A linear
    of shape ``(k_o d, k_i d)`` is ``k_o x k_i`` matrices of ``d x d`` (qkv:
    3 x 1; fc1: 4 x 1; fc2: 1 x 4), and its increment is

    .. math::
        \Delta W_{ij} = s\, V K_{ij} U,\qquad
        y = W x + c + s\, \mathrm{blockdiag}(V)\,
            \mathrm{drop}(K\, \mathrm{blockdiag}(U) x)

    with the shared ``U``, ``V`` (:class:`FacTFactors`) and the site's core
    matrix ``K`` (``k_o r x k_i r``): FacT-TT learns ``K`` per site
    (nn.Linear's init, as the reference's ``*_FacTs``); FacT-TK forms it
    from the shared core tensor and the site's columns of ``P``, with the
    reference's layouts (q, k, v, proj: ``(C P_j)^T``; fc1 and fc2: the
    four columns reshaped to ``r x 4r``). Dropout 0.1 on the rank-r code,
    as the reference. Linear, so it folds into ``W + ΔW``.

    Args:
        factors (FacTFactors): The shared factors. Held as a plain
            reference: their owner saves them once.
        kind (str): The site kind (``qkv``, ``proj``, ``fc1``, ``fc2``).
        blocks (tuple[int, int]): ``(k_o, k_i)``.
        scale (float): ``s``.
        dropout (float): Dropout on the code. Defaults to 0.1.
        columns (tuple[int, ...]): FacT-TK: the site's columns of ``P``;
            empty for FacT-TT.
    """

    def __init__(self,
                 factors: FacTFactors,
                 kind: str,
                 blocks: Tuple[int, int],
                 scale: float,
                 dropout: float = 0.1,
                 columns: Tuple[int, ...] = ()):
        super().__init__()
        self._factors = [factors]
        self.kind = kind
        self.blocks = blocks
        self.scale = scale
        self.columns = columns
        self.dropout = nn.Dropout(dropout)
        rank = factors.u.shape[0]
        self.core = None
        if not columns:
            self.core = nn.Parameter(
                torch.empty(blocks[0] * rank, blocks[1] * rank))
            nn.init.kaiming_uniform_(self.core, a=math.sqrt(5))

    @property
    def factors(self) -> FacTFactors:
        return self._factors[0]

    @property
    def shared(self) -> List[nn.Module]:
        """The modules this delta uses but does not own."""
        return [self.factors]

    def core_matrix(self) -> Tensor:
        """``K``, shape (k_o r, k_i r)."""
        if self.core is not None:
            return self.core
        f = self.factors
        mixed = f.core @ f.p[:, list(self.columns)]  # (r, r, n)
        rank = mixed.shape[0]
        if self.kind == 'fc1':
            return mixed.reshape(rank, -1).t()
        if self.kind == 'fc2':
            return mixed.reshape(rank, -1)
        return torch.cat([mixed[:, :, j].t() for j in range(mixed.shape[2])])

    def forward(self, x: Tensor, weight: Tensor, bias) -> Tensor:
        k_out, k_in = self.blocks
        u = self.factors.u.to(x.dtype)
        v = self.factors.v.to(x.dtype)
        code = (x.unflatten(-1, (k_in, -1)) @ u.t()).flatten(-2)
        code = self.dropout(code @ self.core_matrix().to(x.dtype).t())
        delta = (code.unflatten(-1, (k_out, -1)) @ v.t()).flatten(-2)
        return F.linear(x, weight, bias) + self.scale * delta

    def merged_weight(self, weight: Tensor) -> Tensor:
        k_out, k_in = self.blocks
        u, v = self.factors.u.double(), self.factors.v.double()
        rank = u.shape[0]
        core = self.core_matrix().double().view(k_out, rank, k_in, rank)
        delta = torch.einsum('dr,irjs,se->idje', v, core, u)
        return weight + self.scale * delta.reshape(weight.shape)

    def extra_repr(self) -> str:
        mode = 'tk' if self.columns else 'tt'
        return f'{mode}, blocks={self.blocks}, scale={self.scale:g}'


@MODELS.register_module()
class FacTBackbone(AdapterBackbone):
    """A frozen backbone with FacT's factorised weight increments
    (:class:`FacTDelta`) on every linear of its blocks (qkv, proj, fc1,
    fc2), one :class:`FacTFactors` per width (per stage in Swin).

    Trainable parameters (ViT-B/16, ``d = 768``, ``L = 12`` blocks of 12
    ``d x d`` matrices): FacT-TT ``2 d r + 12 L r^2`` (r = 8: 21,504);
    FacT-TK ``2 d r + r^3 + 12 L r`` (r = 32: 86,528; the paper's 0.069M is
    the mean over its per-task ranks <= 32).

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        mode (str): ``'tt'`` (FacT-TT) or ``'tk'`` (FacT-TK).
        rank (int): ``r``. Defaults to 8 (the reference's default; its
            per-task configs choose 8 to 32).
        scale (float): ``s``. Defaults to 1 (the reference's default; its
            per-task configs choose 0.01 to 100).
        dropout (float): Dropout on the code. Defaults to 0.1.
        **kwargs: ``sites``, ``targets``, ``save_frozen``, ``init_cfg`` of
            :class:`AdapterBackbone`.
    """

    site_form = 'delta'
    default_sites = FACT_SITES

    def __init__(self,
                 backbone: BackboneArg,
                 mode: str = 'tt',
                 rank: int = 8,
                 scale: float = 1.,
                 dropout: float = 0.1,
                 **kwargs):
        if mode not in FACT_MODES:
            raise ValueError(f'FacT mode must be one of {FACT_MODES}, not '
                             f'{mode!r}')
        if rank < 1:
            raise ValueError(f'FacT rank must be >= 1, not {rank}')
        super().__init__(
            backbone,
            settings=dict(mode=mode, rank=rank, scale=scale, dropout=dropout),
            **kwargs)

    @staticmethod
    def _share_key(site: AttachSite) -> str:
        """Sites of one stage (or of the whole backbone) share factors."""
        return site.share_group[len(site.kind):].lstrip('_') or 'all'

    @staticmethod
    def _blocks(site: AttachSite) -> Tuple[int, int, int]:
        width = min(site.in_features, site.out_features)
        if site.in_features % width or site.out_features % width:
            raise ValueError(
                f'FacTBackbone: site {site.path} ({site.kind}): '
                f'{site.in_features} -> {site.out_features} is not made of '
                f'{width} x {width} matrices; leave the kind out of sites=')
        return width, site.out_features // width, site.in_features // width

    def build_shared(self, sites: List[AttachSite]) -> None:
        """The factors of each share group (per stage, or one), with the
        number of core columns its sites take (FacT-TK)."""
        widths: Dict[str, int] = {}
        columns: Dict[str, int] = OrderedDict()
        for site in sites:
            key = self._share_key(site)
            width, k_out, k_in = self._blocks(site)
            if widths.setdefault(key, width) != width:
                raise ValueError(f'FacT share group {key!r} mixes widths '
                                 f'{widths[key]} and {width}')
            columns[key] = columns.get(key, 0) + k_out * k_in
        self.factors = nn.ModuleDict({
            key: FacTFactors(widths[key], self.rank,
                             columns[key] if self.mode == 'tk' else 0)
            for key in widths
        })
        self._next_column = dict.fromkeys(widths, 0)

    def parameter_slices(self) -> Dict[str, List[Tuple[str, Any, nn.Module]]]:
        """FacT-TK: each matrix's columns of ``P``, reached through its
        site."""
        slices: Dict[str, List[Tuple[str, Any, nn.Module]]] = {}
        for site in self.attach_sites:
            module = self.backbone.get_submodule(site.path)
            if module.adapter.columns:
                name = f'factors.{self._share_key(site)}.p'
                slices.setdefault(name, []).append(
                    (site.path, (slice(None), list(module.adapter.columns)),
                     module))
        return slices

    def build_adapter(self, site: AttachSite) -> FacTDelta:
        key = self._share_key(site)
        _, k_out, k_in = self._blocks(site)
        columns: Tuple[int, ...] = ()
        if self.mode == 'tk':
            first = self._next_column[key]
            columns = tuple(range(first, first + k_out * k_in))
            self._next_column[key] = first + len(columns)
        return FacTDelta(self.factors[key], site.kind, (k_out, k_in),
                         self.scale, self.dropout, columns)
