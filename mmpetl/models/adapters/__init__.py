# Copyright (c) mmpetl contributors. All rights reserved.
from .arc import ARCAdapter, ARCBackbone, SharedProjection
from .bitfit import BitFitBackbone
from .e3va import HIGHWAY_TAPS, E3VABackbone, HighwayStage
from .fact import FacTBackbone, FacTDelta, FacTFactors
from .ln_tuning import LNTuningBackbone
from .lora import LoRABackbone, LoRADelta
from .rep_adapter import GroupedLinear, RepAdapter, RepAdapterBackbone
from .ssf import SSFBackbone

__all__ = [
    'RepAdapter', 'GroupedLinear', 'RepAdapterBackbone', 'ARCAdapter',
    'SharedProjection', 'ARCBackbone', 'E3VABackbone', 'HighwayStage',
    'HIGHWAY_TAPS', 'LoRADelta', 'LoRABackbone', 'SSFBackbone',
    'BitFitBackbone', 'LNTuningBackbone', 'FacTFactors', 'FacTDelta',
    'FacTBackbone'
]
