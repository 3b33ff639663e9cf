# Copyright (c) mmpetl contributors. All rights reserved.
"""Where adapters attach in each supported backbone.

One table for all methods: for every backbone class, a regular expression per
*site kind* that matches the module paths of the target ``nn.Linear`` layers.
An adapter wraps the target linear itself (it transforms that linear's input),
so whatever the block does before it (norms, padding of Swin windows) it sees
exactly what the linear sees, and it folds into the linear exactly.

A named group ``stage`` in the pattern splits a site kind into one *share
group* per stage (ARC shares its projection within a share group, and Swin's
stages have different widths).

Some modules bypass their linear's ``forward``: mmaction2's VideoMAE attention
computes ``F.linear(x, qkv.weight, cat(q_bias, 0, v_bias))`` itself. For them
a :class:`ModuleInputSite` names the module whose input the adapter
transforms, the linear inside it that the adapter folds into, and the
module's parameters that hold that linear's bias (its *bias sink*).
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from torch import nn


@dataclass(frozen=True)
class ModuleInputSite:
    """A site kind whose adapter sits on the input of a module that feeds
    that input only to one linear, without calling the linear's forward.

    Attributes:
        module (str): Regex of the module paths (whole-path match; a named
            group ``stage`` makes per-stage share groups).
        linear (str): Path, inside the module, of the linear the adapter
            folds into.
        bias_sink (tuple, optional): Names of the module's parameters that
            hold the linear's bias, one per equal chunk of its outputs, in
            order; ``None`` for a chunk the module's output is invariant to
            (a folded bias there is dropped). ``None`` when the linear's own
            bias is used.
    """
    module: str
    linear: str
    bias_sink: Optional[Tuple[Optional[str], ...]] = None


_SWIN_SITES = dict(
    attn=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.attn\.w_msa\.qkv',
    ffn=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.ffn\.layers\.0\.0')

#: ``'<package>.<ClassName>'`` -> {site kind: linear path pattern, or a
#: :class:`ModuleInputSite`}. Subclasses are found through their MRO.
ATTACH_SITES: Dict[str, Dict[str, Union[str, ModuleInputSite]]] = {
    'mmpretrain.VisionTransformer':
    dict(
        attn=r'layers\.\d+\.attn\.qkv',
        ffn=r'layers\.\d+\.ffn\.layers\.0\.0'),
    'mmpretrain.SwinTransformer': _SWIN_SITES,
    'mmseg.SwinTransformer': _SWIN_SITES,
    'mmdet.SwinTransformer': _SWIN_SITES,
    # VideoMAE ViT (vit_mae.py): with qkv_bias=True, q and v biases are the
    # attention's q_bias / v_bias and the k bias is a constant zero; a bias
    # folded into k changes q.k by a constant per query, which the softmax
    # over keys ignores, so it is dropped.
    'mmaction.VisionTransformer':
    dict(
        attn=ModuleInputSite(
            module=r'blocks\.\d+\.attn',
            linear='qkv',
            bias_sink=('q_bias', None, 'v_bias')),
        ffn=r'blocks\.\d+\.mlp\.layers\.0\.0'),
    # Video Swin (swin.py): windows are padded before the attention, so the
    # qkv adapter sees the padded tokens exactly as qkv does.
    'mmaction.SwinTransformer3D':
    dict(
        attn=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.attn\.qkv',
        ffn=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.mlp\.fc1'),
}


@dataclass(frozen=True)
class AttachSite:
    """One target linear of a backbone.

    Attributes:
        path (str): Module path, inside the backbone, of the module whose
            input the adapter transforms (the linear itself, usually).
        kind (str): Site kind, e.g. ``'attn'`` or ``'ffn'``.
        share_group (str): Name of the group of sites that share parameters
            (``kind``, or ``f'{kind}_stage{i}'``).
        in_features (int): Input size of the linear, the adapter's width.
        linear (str): Path of the linear inside that module; ``''`` when the
            module is the linear.
        bias_sink (tuple, optional): See :class:`ModuleInputSite`.
    """
    path: str
    kind: str
    share_group: str
    in_features: int
    linear: str = ''
    bias_sink: Optional[Tuple[Optional[str], ...]] = None


def _table_key(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def site_patterns(backbone: nn.Module,
                  table: Optional[Dict[str, dict]] = None,
                  argument: str = 'targets') -> dict:
    """The patterns of ``backbone``'s class (or a base class) in ``table``
    (default :data:`ATTACH_SITES`); ``argument`` names the wrapper argument
    that replaces the table, for the error message."""
    table = ATTACH_SITES if table is None else table
    for cls in type(backbone).__mro__:
        if _table_key(cls) in table:
            return table[_table_key(cls)]
    raise KeyError(
        f'no attach sites are known for {_table_key(type(backbone))}; known: '
        f'{sorted(table)}. Pass `{argument}=dict(kind=regex)` to the '
        'wrapper to name the modules yourself.')


def find_attach_sites(
        backbone: nn.Module,
        sites: Sequence[str] = ('attn', 'ffn'),
        targets: Optional[Dict[str, str]] = None) -> List[AttachSite]:
    """List the target linears of ``backbone``.

    Args:
        backbone (nn.Module): The stock backbone.
        sites (Sequence[str]): Site kinds to use from the table, e.g.
            ``('attn', 'ffn')`` or ``('attn',)``.
        targets (dict, optional): ``{kind: spec}`` that replaces the table
            (for backbones it does not know). A spec is a regex of linear
            paths, or a :class:`ModuleInputSite` or the dict of its fields
            (``module``, ``linear``, ``bias_sink``). Patterns must match whole
            module paths.

    Returns:
        list[AttachSite]: In module order.
    """
    if targets is None:
        table = site_patterns(backbone)
        unknown = set(sites) - set(table)
        if unknown:
            raise KeyError(f'unknown site kinds {sorted(unknown)} for '
                           f'{_table_key(type(backbone))}; known: '
                           f'{sorted(table)}')
        targets = {kind: table[kind] for kind in sites}
    specs = {kind: _as_site_spec(spec) for kind, spec in targets.items()}
    patterns = {kind: re.compile(s.module) for kind, s in specs.items()}

    found: List[AttachSite] = []
    for path, module in backbone.named_modules():
        for kind, pattern in patterns.items():
            match = pattern.fullmatch(path)
            if match is None:
                continue
            spec = specs[kind]
            try:
                linear = module.get_submodule(spec.linear)
            except AttributeError:
                raise TypeError(f'attach site {path!r} ({kind}) has no '
                                f'submodule {spec.linear!r}')
            if not isinstance(linear, nn.Linear):
                name = '.'.join(p for p in (path, spec.linear) if p)
                raise TypeError(f'attach site {name!r} ({kind}) is a '
                                f'{type(linear).__name__}, not an nn.Linear')
            stage = match.groupdict().get('stage')
            group = kind if stage is None else f'{kind}_stage{stage}'
            found.append(
                AttachSite(path, kind, group, linear.in_features,
                           spec.linear, spec.bias_sink))
    missing = set(patterns) - {site.kind for site in found}
    if missing:
        raise ValueError(f'site kinds {sorted(missing)} match no module of '
                         f'{type(backbone).__name__}')
    return found


def _as_site_spec(spec: Union[str, dict, ModuleInputSite]) -> ModuleInputSite:
    """A table or ``targets`` entry as a :class:`ModuleInputSite`: a regex
    names linears themselves; a dict (from a config) gives its fields."""
    if isinstance(spec, ModuleInputSite):
        return spec
    if isinstance(spec, dict):
        return ModuleInputSite(**spec)
    return ModuleInputSite(module=spec, linear='')


def normalize_sites(sites: Union[str, Sequence[str]]) -> tuple:
    """Accept ``'attn'`` as well as ``('attn', 'ffn')``."""
    return (sites, ) if isinstance(sites, str) else tuple(sites)
