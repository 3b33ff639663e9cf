# Copyright (c) mmpetl contributors. All rights reserved.
"""Every method of mmpetl under one short name, for the benchmark tools
(``tools/benchmarks/inference.py``, ``tools/benchmarks/adapter_params.py``)
to build each from one place."""
from typing import Dict

#: Short name (the suffix of ``configs/quickstart/vit-tiny_digits5-9_*``)
#: -> wrapper config at the paper's defaults, without ``backbone``.
#: A method is built on a backbone as ``dict(cfg, backbone=stock_cfg)``;
#: one that does not apply to it (Mona, LoRand and Partial-1 off the Swin
#: families, VPT on windowed attention) is refused at build in one line.
METHODS: Dict[str, dict] = {
    # Foldable: merge into a stock checkpoint.
    'repadapter': dict(type='mmpetl.RepAdapterBackbone'),
    'arc': dict(type='mmpetl.ARCBackbone'),
    'lora': dict(type='mmpetl.LoRABackbone'),
    'dora': dict(type='mmpetl.LoRABackbone', dora=True),
    'ssf': dict(type='mmpetl.SSFBackbone'),
    'bitfit': dict(type='mmpetl.BitFitBackbone'),
    'ln-tuning': dict(type='mmpetl.LNTuningBackbone'),
    'fact-tt': dict(type='mmpetl.FacTBackbone', mode='tt', rank=8),
    'fact-tk': dict(type='mmpetl.FacTBackbone', mode='tk', rank=32),
    # Non-foldable: they run beside / after stock modules at inference.
    'adaptformer': dict(type='mmpetl.AdaptFormerBackbone'),
    'houlsby': dict(type='mmpetl.HoulsbyAdapterBackbone'),
    'pfeiffer': dict(type='mmpetl.PfeifferAdapterBackbone'),
    'convpass': dict(type='mmpetl.ConvpassBackbone'),
    'vpt-shallow': dict(type='mmpetl.VPTBackbone', mode='shallow'),
    'vpt-deep': dict(type='mmpetl.VPTBackbone', mode='deep'),
    'mona': dict(type='mmpetl.MonaBackbone'),
    # The dense baselines of E3VA's table (Swin).
    'lorand': dict(type='mmpetl.LoRandBackbone'),
    'partial-1': dict(type='mmpetl.Partial1Backbone'),
    # The supernet: every module at the search space's largest dimension
    # (a found subnet is smaller; docs/en/methods/noah.md).
    'noah': dict(type='mmpetl.NOAHBackbone', search_space=dict()),
}
