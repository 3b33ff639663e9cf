# Copyright (c) mmpetl contributors. All rights reserved.
from .adapted_linear import AdaptedLinear
from .adapter_backbone import AdapterBackbone, FrozenBackbone
from .adapters import *  # noqa: F401,F403
from .mergeable_adapter import MergeableAdapter
from .attach_sites import ATTACH_SITES, AttachSite, find_attach_sites

__all__ = [
    'AdaptedLinear', 'MergeableAdapter', 'AdapterBackbone', 'FrozenBackbone', 'ATTACH_SITES',
    'AttachSite', 'find_attach_sites'
]
