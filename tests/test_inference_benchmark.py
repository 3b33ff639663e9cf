# Copyright (c) mmpetl contributors. All rights reserved.
"""tools/benchmarks/inference.py end to end, once, on a tiny ViT with every
method: one row per method that applies (merged cells exactly for the
methods that fold), the others named with their wrapper's reason. The
latencies themselves are the tool's output, not checked here."""
import json
import re

from mmpetl.benchmarks.methods import METHODS
from tests.support.tools import run_tool

FOLDABLE = {'repadapter', 'arc', 'lora', 'dora', 'ssf', 'bitfit',
            'ln-tuning', 'fact-tt', 'fact-tk', 'partial-1'}
WIDTH, LAYERS = 32, 2
TINY = json.dumps(dict(embed_dims=WIDTH, num_layers=LAYERS, num_heads=2,
                       feedforward_channels=64))
CELL = r'[\d.]+ ms \(([\d.]+)x\)'


def test_inference_benchmark_times_every_method_once():
    result = run_tool('tools/benchmarks/inference.py', '--arch', TINY,
                      '--img-size', '32', '--batch-size', '1', '2',
                      '--rounds', '1', '--warmup', '0')
    out = result.stdout
    rows = {}
    for line in out.splitlines():
        cells = [c.strip() for c in line.strip('| \n').split('|')]
        if line.startswith('| ') and len(cells) == 6 and cells[0] not in (
                'method', '---'):
            rows[cells[0]] = cells[1:]
    # Mona runs inside Swin blocks only: refused on the ViT, by name.
    assert set(rows) == {'stock', *METHODS} - {'mona'}, out
    assert re.search(r'^mona: not built on this backbone \(MonaBackbone '
                     r'does not support', out, re.M), out
    assert [float(re.fullmatch(CELL, rows['stock'][i])[1])
            for i in (1, 3)] == [1.0, 1.0]
    for method, (added, b1, b1_merged, b2, b2_merged) in rows.items():
        if method == 'stock':
            continue
        assert re.fullmatch(CELL, b1) and re.fullmatch(CELL, b2), method
        if method in FOLDABLE:
            assert re.fullmatch(CELL, b1_merged), method
            assert re.fullmatch(CELL, b2_merged), method
        else:
            assert b1_merged == b2_merged == '-', method
            assert re.search(
                rf'^{method}: not merged \(.*(does|do) not fold', out,
                re.M), method
    # N d prompt parameters at the input, at every layer for VPT-deep.
    assert rows['vpt-shallow'][0] == f'{10 * WIDTH:,}'
    assert rows['vpt-deep'][0] == f'{10 * WIDTH * LAYERS:,}'
    assert re.search(r'^merged / stock: [\d.]+ \.\. [\d.]+ over '
                     rf'{2 * len(FOLDABLE)} ', out, re.M), out
