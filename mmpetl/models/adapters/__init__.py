# Copyright (c) mmpetl contributors. All rights reserved.
from .adaptformer import AdaptFormerBackbone
from .arc import ARCAdapter, ARCBackbone, SharedProjection
from .bitfit import BitFitBackbone
from .bottleneck import BottleneckAdapter, BottleneckAdapterBackbone
from .convpass import ConvpassBackbone, ConvpassBranch
from .e3va import HIGHWAY_TAPS, E3VABackbone, HighwayStage
from .fact import FacTBackbone, FacTDelta, FacTFactors
from .houlsby import HoulsbyAdapterBackbone
from .ln_tuning import LNTuningBackbone
from .lora import LoRABackbone, LoRADelta
from .lorand import LoRand, LoRandBackbone, LoRandProjection
from .mona import Mona, MonaBackbone, MonaPair
from .noah import NOAHBackbone, SlicedAdapter, SlicedLoRA, SlicedPrompts
from .partial import Partial1Backbone
from .pfeiffer import PfeifferAdapterBackbone
from .rep_adapter import GroupedLinear, RepAdapter, RepAdapterBackbone
from .ssf import SSFBackbone
from .vpt import VisualPrompts, VPTBackbone

__all__ = [
    'RepAdapter', 'GroupedLinear', 'RepAdapterBackbone', 'ARCAdapter',
    'SharedProjection', 'ARCBackbone', 'E3VABackbone', 'HighwayStage',
    'HIGHWAY_TAPS', 'LoRADelta', 'LoRABackbone', 'SSFBackbone',
    'BitFitBackbone', 'LNTuningBackbone', 'FacTFactors', 'FacTDelta',
    'FacTBackbone', 'BottleneckAdapter', 'BottleneckAdapterBackbone',
    'AdaptFormerBackbone', 'HoulsbyAdapterBackbone',
    'PfeifferAdapterBackbone', 'ConvpassBranch', 'ConvpassBackbone',
    'Mona', 'MonaPair', 'MonaBackbone', 'VisualPrompts', 'VPTBackbone',
    'LoRandProjection', 'LoRand', 'LoRandBackbone', 'Partial1Backbone',
    'NOAHBackbone', 'SlicedLoRA', 'SlicedAdapter', 'SlicedPrompts'
]
