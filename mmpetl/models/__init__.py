# Copyright (c) mmpetl contributors. All rights reserved.
from .adapted_linear import AdaptedLinear, FoldTarget, fold_adapter
from .adapted_module import AdaptedModule
from .adapter_backbone import AdapterBackbone, FrozenBackbone
from .adapters import (HIGHWAY_TAPS, ARCAdapter, ARCBackbone, E3VABackbone,
                       GroupedLinear, HighwayStage, RepAdapter,
                       RepAdapterBackbone, SharedProjection)
from .attach_sites import (ATTACH_SITES, AttachSite, ModuleInputSite,
                           find_attach_sites)
from .mergeable_adapter import MergeableAdapter
from .site_check import AffineStandIn, AttachSiteError, check_sites

__all__ = [
    'MergeableAdapter', 'AdaptedLinear', 'AdaptedModule', 'fold_adapter',
    'FoldTarget', 'AffineStandIn', 'AttachSiteError', 'check_sites',
    'FrozenBackbone', 'AdapterBackbone', 'ATTACH_SITES', 'AttachSite',
    'ModuleInputSite', 'find_attach_sites', 'RepAdapter', 'GroupedLinear',
    'RepAdapterBackbone', 'ARCAdapter', 'SharedProjection', 'ARCBackbone',
    'E3VABackbone', 'HighwayStage', 'HIGHWAY_TAPS'
]
