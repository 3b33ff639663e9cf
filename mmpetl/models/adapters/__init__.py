# Copyright (c) mmpetl contributors. All rights reserved.
from .arc import ARCAdapter, ARCBackbone, SharedProjection
from .e3va import HIGHWAY_TAPS, E3VABackbone, HighwayStage
from .rep_adapter import GroupedLinear, RepAdapter, RepAdapterBackbone

__all__ = [
    'RepAdapter', 'GroupedLinear', 'RepAdapterBackbone',
    'ARCAdapter', 'SharedProjection', 'ARCBackbone', 'E3VABackbone',
    'HighwayStage', 'HIGHWAY_TAPS'
]
