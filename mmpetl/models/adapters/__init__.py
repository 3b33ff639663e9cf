# Copyright (c) mmpetl contributors. All rights reserved.
from .arc import ARCAdapter, ARCBackbone, SharedProjection
from .rep_adapter import GroupedLinear, RepAdapter, RepAdapterBackbone

__all__ = [
    'RepAdapter', 'GroupedLinear', 'RepAdapterBackbone',
    'ARCAdapter', 'SharedProjection', 'ARCBackbone'
]
