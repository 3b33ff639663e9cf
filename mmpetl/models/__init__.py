# Copyright (c) mmpetl contributors. All rights reserved.
from .adapted_linear import AdaptedLinear
from .adapter_backbone import AdapterBackbone, FrozenBackbone
from .adapters import (HIGHWAY_TAPS, ARCAdapter, ARCBackbone, E3VABackbone,
                       GroupedLinear, HighwayStage, RepAdapter,
                       RepAdapterBackbone, SharedProjection)
from .attach_sites import ATTACH_SITES, AttachSite, find_attach_sites
from .mergeable_adapter import MergeableAdapter

__all__ = [
    'MergeableAdapter', 'AdaptedLinear', 'FrozenBackbone', 'AdapterBackbone',
    'ATTACH_SITES', 'AttachSite', 'find_attach_sites', 'RepAdapter',
    'GroupedLinear', 'RepAdapterBackbone', 'ARCAdapter', 'SharedProjection',
    'ARCBackbone', 'E3VABackbone', 'HighwayStage', 'HIGHWAY_TAPS'
]
