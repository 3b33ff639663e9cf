# Copyright (c) mmpetl contributors. All rights reserved.
"""NOAH: the supernet over Adapter, LoRA and VPT, and its subnets.

`Neural Prompt Search <https://arxiv.org/abs/2206.04673>`_ (Zhang, Zhou,
Liu, 2022), reference code ZhangYuanhan-AI/NOAH. The search:
:mod:`mmpetl.suites.noah_search`; the sampling during supernet training:
:class:`~mmpetl.engine.hooks.NOAHSupernetHook`.
"""
import math
from functools import partial
from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..attach_sites import find_attach_sites
from ..nonfoldable import SequentialSite
from ..petl import AdaptedSite, PETLModule
from ..weight_delta import WeightDelta

#: The three prompt modules, in the order of an architecture's lists.
MODULES = ('prompt', 'lora', 'adapter')
#: The reference's VTAB-1k search space (``supernet-B_prompt_VTAB.yaml``):
#: per module a depth ``D`` (the first ``D`` layers get it) and per layer a
#: dimension (prompt length, LoRA rank, adapter bottleneck). ``depths``
#: None: quarters of the layer count ({3, 6, 9, 12} at 12 layers).
DEFAULT_SPACE = {m: dict(dims=(1, 5, 10), depths=None) for m in MODULES}
#: NOAH's initialisations: ``'reference'`` is what its code runs (its
#: ViT's ``init_weights`` re-draws every ``nn.Linear``, LoRA and adapter
#: included, as trunc_normal(0.02) with zero bias, after they are built);
#: ``'modules'`` is what its module files write (LoRA ``A``
#: kaiming-uniform, ``B`` zero; adapter xavier-uniform, biases N(0, 1e-6)).
INITS = ('reference', 'modules')
#: The reference supernet's width (``SUPERNET.*_DIM``): its prompts'
#: xavier bound is drawn for (1, 100, d) tensors.
_REFERENCE_WIDTH = 100


def quick_gelu(x: Tensor) -> Tensor:
    """The reference adapter's activation, ``x sigmoid(1.702 x)``."""
    return x * torch.sigmoid(1.702 * x)


class SlicedLoRA(WeightDelta):
    r"""LoRA on a linear with an active rank ``r <= R`` (weight
    entanglement: rank ``r`` uses the first ``r`` rows of ``A`` and columns
    of ``B``):

    .. math::
        y = W x + c + B_{:, :r} A_{:r}\,\mathrm{drop}(x)

    No ``alpha / r`` scale (NOAH's LoRA has none). ``r = 0``: ``W x + c``.
    Folds into ``W' = W + B_{:, :r} A_{:r}``.

    Shapes: ``A`` (R, in), ``B`` (out, R); input (..., in) -> (..., out).
    """

    def __init__(self, in_features: int, out_features: int, size: int,
                 dropout: float = 0.1, init: str = 'reference'):
        super().__init__()
        self.lora_A = nn.Parameter(torch.empty(size, in_features))
        self.lora_B = nn.Parameter(torch.empty(out_features, size))
        if init == 'reference':
            nn.init.trunc_normal_(self.lora_A, std=.02)
            nn.init.trunc_normal_(self.lora_B, std=.02)
        else:
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
            nn.init.zeros_(self.lora_B)
        self.dropout = nn.Dropout(dropout)
        self.rank = size

    def forward(self, x: Optional[Tensor], weight: Tensor, bias) -> Tensor:
        if x is None:
            return self.adapted_weight(weight)
        out = F.linear(x, weight, bias)
        if not self.rank:
            return out
        r = self.rank
        return out + F.linear(F.linear(self.dropout(x), self.lora_A[:r]),
                              self.lora_B[:, :r])

    def adapted_weight(self, weight: Tensor) -> Tensor:
        r = self.rank
        return weight + (self.lora_B[:, :r] @ self.lora_A[:r]).to(weight)

    def merged_weight(self, weight: Tensor) -> Tensor:
        r = self.rank
        return torch.addmm(weight, self.lora_B[:, :r].double(),
                           self.lora_A[:r].double())

    def extra_repr(self) -> str:
        return f'rank={self.rank} of {len(self.lora_A)}'


class SlicedAdapter(PETLModule):
    r"""NOAH's sequential adapter with an active bottleneck ``r <= R``:

    .. math::
        a(h) = h + W_{up, :, :r}\,\mathrm{drop}(\mathrm{QuickGELU}(
               W_{down, :r} h + b_{down, :r})) + b_{up}

    ``r = 0``: ``a(h) = h``.

    Shapes: ``down`` (R, d), ``up`` (d, R); tokens (..., d) -> (..., d).
    """

    def __init__(self, width: int, size: int, dropout: float = 0.1,
                 init: str = 'reference'):
        super().__init__()
        self.down = nn.Linear(width, size)
        self.up = nn.Linear(size, width)
        for linear in (self.down, self.up):
            if init == 'reference':
                nn.init.trunc_normal_(linear.weight, std=.02)
                nn.init.zeros_(linear.bias)
            else:
                nn.init.xavier_uniform_(linear.weight)
                nn.init.normal_(linear.bias, std=1e-6)
        self.dropout = nn.Dropout(dropout)
        self.dim = size

    def forward(self, h: Tensor) -> Tensor:
        if not self.dim:
            return h
        r = self.dim
        hidden = quick_gelu(
            F.linear(h, self.down.weight[:r], self.down.bias[:r]))
        return h + F.linear(self.dropout(hidden), self.up.weight[:, :r],
                            self.up.bias)

    def extra_repr(self) -> str:
        return f'dim={self.dim} of {self.down.out_features}'


class SlicedPrompts(PETLModule):
    """NOAH's per-layer visual prompts, of active length ``n_i <= N_i``.

    Layer ``i`` runs on ``[tokens, carried]``: with ``n_i > 0`` the carried
    prompts lose their last ``n_{i-1}`` tokens (the previous layer's
    prompts; none before layer 0) and ``drop(P_i[:n_i])`` is appended; with
    ``n_i = 0`` the carried prompt outputs pass on. After each layer the
    prompt outputs are cut off and carried, so that the backbone's own
    output formatting sees exactly its own tokens (NOAH appends prompts
    after the patch tokens and reads the class token only).

    Shapes: ``embeddings[str(i)]`` (N_i, d) for the layers with ``N_i > 0``.
    """

    def __init__(self, sizes: Sequence[int], width: int,
                 dropout: float = 0.1):
        super().__init__()
        self.embeddings = nn.ParameterDict()
        bound = math.sqrt(6. / ((_REFERENCE_WIDTH + 1) * width))
        for index, size in enumerate(sizes):
            if size:
                self.embeddings[str(index)] = nn.Parameter(
                    torch.empty(size, width).uniform_(-bound, bound))
        self.lengths = list(sizes)
        self.dropout = nn.Dropout(dropout)
        self._carried: Optional[Tensor] = None
        self._tokens = 0

    def attach(self, layers: List[nn.Module]) -> None:
        """Insert and cut the prompts around each of ``layers`` (in
        order)."""
        for index, layer in enumerate(layers):
            layer.register_forward_pre_hook(partial(self._insert, index))
            layer.register_forward_hook(self._cut)

    def _insert(self, index: int, layer: nn.Module, args: tuple) -> tuple:
        x, *rest = args
        carried = self._carried if index else x[:, :0]
        length = self.lengths[index]
        if length:
            previous = self.lengths[index - 1] if index else 0
            prompts = self.embeddings[str(index)][:length].to(x.dtype)
            carried = torch.cat(
                (carried[:, :carried.shape[1] - previous],
                 self.dropout(prompts.expand(len(x), -1, -1))), dim=1)
        self._tokens = x.shape[1]
        return (torch.cat((x, carried), dim=1), *rest)

    def _cut(self, layer: nn.Module, args: tuple, out: Tensor) -> Tensor:
        self._carried = out[:, self._tokens:]
        return out[:, :self._tokens]

    def extra_repr(self) -> str:
        return f'lengths={self.lengths}'


def default_depths(num_layers: int) -> List[int]:
    """Quarters of the layer count, rounded up: (3, 6, 9, 12) at 12."""
    return sorted({math.ceil(num_layers * k / 4) for k in range(1, 5)})


def sample_arch(space: Dict[str, dict], num_layers: int,
                rng) -> Dict[str, List[int]]:
    """A random subnet of ``space``, drawn from ``rng`` (a
    ``random.Random``) as the reference's
    ``sample_configs``: per module a depth ``D``, then a dimension for
    each of the first ``D`` layers (the rest 0); depths first, in
    :data:`MODULES` order."""
    depths = {m: rng.choice(space[m]['depths']) for m in MODULES}
    # The reference also draws prefix tuning's depth, from {0}: drawn too,
    # so that a seed gives the reference's sequence of subnets.
    rng.choice((0, ))
    return {m: [rng.choice(space[m]['dims']) for _ in range(depths[m])] +
            [0] * (num_layers - depths[m]) for m in MODULES}


@MODELS.register_module()
class NOAHBackbone(AdapterBackbone):
    r"""NOAH: per layer a visual prompt, LoRA on ``qkv`` and an adapter
    after the MLP, each of a searched dimension (0: absent).

    With ``search_space`` it is the *supernet*: every layer holds each
    module at the space's largest dimension, and :meth:`set_arch` picks the
    active subnet, whose modules are slices of those (weight
    entanglement: dimension ``r`` uses the first ``r`` rows / tokens).
    With ``arch`` it is that *subnet*, built at its own sizes (what the
    retraining stage trains; its checkpoint holds the subnet only).

    Per layer ``i`` (the reference's timm block; dimensions ``p_i``,
    ``r_i``, ``a_i``):

    .. math::
        z &= [x;\ P_i]\\
        z &= z + \mathrm{Attn}(\mathrm{LN}(z)) \text{ with }
             W_{qkv} + B_{:, :r_i} A_{:r_i}\\
        z &= z + a_i(\mathrm{MLP}(\mathrm{LN}(z)))

    (prompts appended: :class:`SlicedPrompts`; ``a_i``:
    :class:`SlicedAdapter`).

    An architecture is ``dict(prompt=[p_0, ...], lora=[r_0, ...],
    adapter=[a_0, ...])``, one entry per layer. Trainable parameters of a
    subnet: ``sum_i p_i d + r_i (d + 3 d) + [a_i > 0] (2 a_i d + a_i + d)``
    (:meth:`arch_parameters`); the reference's published CIFAR-100 subnet
    at ViT-B/16: see the method page.

    Merging: LoRA folds into ``qkv``; adapters (non-linear) and prompts
    (extra attention inputs) do not, so a subnet with either is refused
    in one line per blocker (:meth:`merge_blockers`); a LoRA-only subnet
    folds exactly.

    Deviations (docs/en/methods/noah.md): the supernet is built at the
    space's largest dimension (the reference: 100, sampled up to 10); no
    input-level prompts (never reach the reference's output); the adapter
    acts before the MLP's drop path (the reference: after it).

    Args:
        backbone (dict | nn.Module): The stock ViT, as a config or built.
        search_space (dict, optional): ``{module: dict(dims=..., depths=...)}``
            for the supernet; modules left out keep :data:`DEFAULT_SPACE`.
        arch (dict, optional): The subnet to build. Exactly one of
            ``search_space`` and ``arch``.
        dropout (float): Dropout of the three modules (the reference's
            ``drop_rate_LoRA / prompt / adapter``). Defaults to 0.1.
        init (str): One of :data:`INITS`. Defaults to ``'reference'`` (what
            the reference runs: LoRA does not start at zero).
        **kwargs: ``check_input_shape``, ``save_frozen``, ``init_cfg`` of
            :class:`~mmpetl.models.AdapterBackbone`.
    """

    site_form = 'delta'
    site_type = SequentialSite

    def __init__(self,
                 backbone: BackboneArg,
                 search_space: Optional[dict] = None,
                 arch: Optional[dict] = None,
                 dropout: float = 0.1,
                 init: str = 'reference',
                 **kwargs):
        if (search_space is None) == (arch is None):
            raise ValueError('NOAHBackbone takes either search_space (the '
                             'supernet) or arch (a subnet), not '
                             f'{"both" if arch else "neither"}')
        if init not in INITS:
            raise ValueError(f'NOAHBackbone: init must be one of {INITS}, '
                             f'not {init!r}')
        fixed = sorted({'sites', 'targets'} & set(kwargs))
        if fixed:
            raise ValueError(f'NOAHBackbone takes no {fixed}: its sites are '
                             "the table's layer, qkv and fc2 kinds")
        super().__init__(
            backbone,
            settings=dict(search_space=search_space, arch_cfg=arch,
                          dropout=dropout, adapter_init=init),
            **kwargs)

    # Building.
    def find_sites(self) -> List[AttachSite]:
        """Every ``layer`` (prompts), ``qkv`` (LoRA) and ``fc2`` (adapter)
        site, in that order."""
        return [
            site for kind, form in (('layer', 'module'), ('qkv', 'delta'),
                                    ('fc2', 'module'))
            for site in find_attach_sites(self.backbone, (kind, ), form=form,
                                          method='NOAHBackbone')
        ]

    def build_shared(self, sites: List[AttachSite]) -> None:
        """The search space, the sizes built, and the prompts of every
        layer, hooked around the layers."""
        layers = [site for site in sites if site.kind == 'layer']
        self.layer_paths = [site.path for site in layers]
        self.layers = [self.backbone.get_submodule(p)
                       for p in self.layer_paths]
        self.width = layers[0].in_features
        self.lora_widths = [s.in_features + s.out_features for s in sites
                            if s.kind == 'qkv']
        self.space = self._resolve_space()
        self.sizes = self._module_sizes()
        self.prompts = SlicedPrompts(self.sizes['prompt'], self.width,
                                     self.dropout)
        self.prompts.attach(self.layers)
        self.arch = self.largest_arch()

    def _resolve_space(self) -> Optional[Dict[str, dict]]:
        if self.search_space is None:
            return None
        unknown = set(self.search_space) - set(MODULES)
        if unknown:
            raise ValueError(f'NOAH search_space: unknown module(s) '
                             f'{sorted(unknown)}; known: {MODULES}')
        space = {}
        for module in MODULES:
            spec = dict(DEFAULT_SPACE[module],
                        **self.search_space.get(module, {}))
            depths = spec['depths'] or default_depths(len(self.layers))
            if not spec['dims'] or min(spec['dims']) < 1 or not depths or \
                    not all(1 <= d <= len(self.layers) for d in depths):
                raise ValueError(
                    f'NOAH search_space.{module}: dims must be >= 1 and '
                    f'depths in 1..{len(self.layers)} (the layer count), '
                    f'not {spec["dims"]} / {depths}')
            space[module] = dict(dims=tuple(spec['dims']),
                                 depths=tuple(depths))
        return space

    def _module_sizes(self) -> Dict[str, List[int]]:
        """Per module and layer, the size built."""
        n = len(self.layers)
        if self.space is not None:
            return {m: [max(self.space[m]['dims'])] * n for m in MODULES}
        return self.check_arch(self.arch_cfg, {m: [None] * n
                                               for m in MODULES})

    def check_arch(self, arch: dict, sizes: Optional[dict] = None) -> dict:
        """``arch`` as lists of ints, or a one-line ``ValueError`` if it is
        not one for this backbone (sizes: the built ones)."""
        sizes = sizes or self.sizes
        n = len(self.layers)
        if not isinstance(arch, dict) or set(arch) != set(MODULES):
            raise ValueError(f'NOAH arch must be dict(prompt=[...], lora='
                             f'[...], adapter=[...]), not {arch!r}')
        checked = {}
        for m in MODULES:
            dims = [int(d) for d in arch[m]]
            if len(dims) != n or any(d < 0 or s is not None and d > s
                                     for d, s in zip(dims, sizes[m])):
                most = '' if sizes[m][0] is None else f' <= {sizes[m]}'
                raise ValueError(
                    f'NOAH arch.{m}: {n} dimensions >= 0{most} (one per '
                    f'layer) expected, got {list(arch[m])}')
            checked[m] = dims
        return checked

    def _size(self, site: AttachSite) -> int:
        return self.sizes['lora' if site.kind == 'qkv' else 'adapter'][
            self._layer_index(site)]

    def _layer_index(self, site: AttachSite) -> int:
        for index, path in enumerate(self.layer_paths):
            if site.path.startswith(path + '.'):
                return index
        raise ValueError(f'NOAH: site {site.path} is in no layer')

    def build_adapter(self, site: AttachSite) -> Optional[PETLModule]:
        """LoRA at ``qkv``, the adapter at ``fc2``; None at the layers (the
        prompts act there) and where the module's size is 0."""
        if site.kind == 'layer' or not self._size(site):
            return None
        if site.kind == 'qkv':
            return SlicedLoRA(site.in_features, site.out_features,
                              self._size(site), self.dropout,
                              self.adapter_init)
        return SlicedAdapter(site.out_features, self._size(site),
                             self.dropout, self.adapter_init)

    def nonfoldable_reason(self, site: AttachSite) -> str:
        return ("NOAH's adapter is a non-linear (QuickGELU) bottleneck after "
                'the MLP: it does not fold into the stock backbone; deploy '
                'the adapter checkpoint with its mmpetl config')

    # Subnets.
    def _modules_by_layer(self) -> Dict[str, Dict[int, PETLModule]]:
        found = {'lora': {}, 'adapter': {}}
        for site in self.attach_sites:
            module = self.backbone.get_submodule(site.path)
            if isinstance(module, AdaptedSite):
                kind = 'lora' if site.kind == 'qkv' else 'adapter'
                found[kind][self._layer_index(site)] = module.adapter
        return found

    def set_arch(self, arch: dict) -> None:
        """Make ``arch`` the active subnet (dimensions up to the sizes
        built)."""
        arch = self.check_arch(arch)
        modules = self._modules_by_layer()
        for index in range(len(self.layers)):
            if index in modules['lora']:
                modules['lora'][index].rank = arch['lora'][index]
            if index in modules['adapter']:
                modules['adapter'][index].dim = arch['adapter'][index]
        self.prompts.lengths = list(arch['prompt'])
        self.arch = arch

    def sample_arch(self, rng) -> Dict[str, List[int]]:
        """A random subnet of the search space drawn from ``rng``, a
        ``random.Random`` (:func:`sample_arch`)."""
        if self.space is None:
            raise ValueError('NOAH: a subnet (arch=) has no search space')
        return sample_arch(self.space, len(self.layers), rng)

    def largest_arch(self) -> Dict[str, List[int]]:
        """Every module at its built size (the supernet: the largest
        subnet, which uses every trainable parameter)."""
        return {m: list(self.sizes[m]) for m in MODULES}

    def arch_parameters(self, arch: dict) -> int:
        """Trainable parameters of subnet ``arch`` (head excluded)."""
        arch = self.check_arch(arch)
        d = self.width
        return sum(p * d + r * widths + bool(a) * (a * (2 * d + 1) + d)
                   for p, r, a, widths in zip(arch['prompt'], arch['lora'],
                                              arch['adapter'],
                                              self.lora_widths))

    def check_trainable(self, *args, **kwargs) -> None:
        """The first-step checks on the largest subnet (a sampled one
        leaves parameters unused), then the active subnet back."""
        active = self.arch
        self.set_arch(self.largest_arch())
        try:
            super().check_trainable(*args, **kwargs)
        finally:
            self.set_arch(active)

    def merge_blockers(self) -> List[str]:
        """The adapters' one-line reasons, and the prompts' if any is
        active."""
        blockers = super().merge_blockers()
        if any(self.prompts.lengths):
            blockers.append(
                f'prompts: NOAH adds visual prompts at layers '
                f'{[i for i, n in enumerate(self.prompts.lengths) if n]}: '
                'extra attention inputs do not fold into the stock backbone; '
                'deploy the adapter checkpoint with its mmpetl config')
        return blockers
