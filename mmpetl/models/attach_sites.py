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
"""
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Union

from torch import nn

_SWIN_SITES = dict(
    attn=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.attn\.w_msa\.qkv',
    ffn=r'stages\.(?P<stage>\d+)\.blocks\.\d+\.ffn\.layers\.0\.0')

#: ``'<package>.<ClassName>'`` -> {site kind: module path pattern}.
#: Subclasses are found through their MRO.
ATTACH_SITES: Dict[str, Dict[str, str]] = {
    'mmpretrain.VisionTransformer':
    dict(
        attn=r'layers\.\d+\.attn\.qkv',
        ffn=r'layers\.\d+\.ffn\.layers\.0\.0'),
    'mmpretrain.SwinTransformer': _SWIN_SITES,
    'mmseg.SwinTransformer': _SWIN_SITES,
    'mmdet.SwinTransformer': _SWIN_SITES,
}


@dataclass(frozen=True)
class AttachSite:
    """One target linear of a backbone.

    Attributes:
        path (str): Module path of the linear inside the backbone.
        kind (str): Site kind, e.g. ``'attn'`` or ``'ffn'``.
        share_group (str): Name of the group of sites that share parameters
            (``kind``, or ``f'{kind}_stage{i}'``).
        in_features (int): Input size of the linear, the adapter's width.
    """
    path: str
    kind: str
    share_group: str
    in_features: int


def _table_key(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def site_patterns(backbone: nn.Module,
                  table: Optional[Dict[str, Dict[str, str]]] = None,
                  argument: str = 'targets') -> Dict[str, str]:
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
        targets (dict, optional): ``{kind: regex}`` that replaces the table
            (for backbones it does not know). Patterns must match whole module
            paths.

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
    patterns = {kind: re.compile(p) for kind, p in targets.items()}

    found: List[AttachSite] = []
    for path, module in backbone.named_modules():
        for kind, pattern in patterns.items():
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if not isinstance(module, nn.Linear):
                raise TypeError(f'attach site {path!r} ({kind}) is a '
                                f'{type(module).__name__}, not an nn.Linear')
            stage = match.groupdict().get('stage')
            group = kind if stage is None else f'{kind}_stage{stage}'
            found.append(AttachSite(path, kind, group, module.in_features))
    missing = set(patterns) - {site.kind for site in found}
    if missing:
        raise ValueError(f'site kinds {sorted(missing)} match no module of '
                         f'{type(backbone).__name__}')
    return found


def normalize_sites(sites: Union[str, Sequence[str]]) -> tuple:
    """Accept ``'attn'`` as well as ``('attn', 'ffn')``."""
    return (sites, ) if isinstance(sites, str) else tuple(sites)
