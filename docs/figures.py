# Copyright (c) mmpetl contributors. All rights reserved.
"""Draw the documentation's figures from the measured tables on its pages,
with the plotting functions the suite and benchmark tools use
(:mod:`mmpetl.benchmarks.plots`):

- ``docs/en/_static/figures/compare_accuracy_vs_params.png``: the CPU
  comparison (``docs/en/benchmarks/compare.md``), mean top-1 against
  trainable backbone parameters;
- ``docs/en/_static/figures/training_cost_vit-b16.png``: memory and step
  time per method at ViT-B/16 as printed on
  ``docs/en/benchmarks/training_cost.md``.

Run ``python docs/figures.py`` after either table changes.
"""
import os.path as osp
import re
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

from mmpetl.benchmarks.plots import (  # noqa: E402
    plot_accuracy_vs_parameters, plot_costs)

PAGES = osp.join(ROOT, 'docs', 'en', 'benchmarks')
OUT = osp.join(ROOT, 'docs', 'en', '_static', 'figures')


def compare_rows():
    """The measured rows of compare.md's table (method, mean, params)."""
    with open(osp.join(PAGES, 'compare.md')) as f:
        lines = f.read().splitlines()
    header = next(i for i, line in enumerate(lines)
                  if line.startswith('| method | digits5-9'))
    names = [c.strip() for c in lines[header].strip('|').split('|')]
    rows = []
    for line in lines[header + 2:]:
        if not line.startswith('|'):
            break
        cells = dict(zip(names, (c.strip() for c in
                                 line.strip('|').split('|'))))
        rows.append(dict(method=cells['method'], mean=float(cells['mean']),
                         trainable_backbone=int(
                             cells['trainable_backbone'].replace(',', ''))))
    return rows


def training_costs():
    """``{method: {train_memory_bytes, step_time_s}}`` from the printed
    ViT-B/16 run on training_cost.md."""
    with open(osp.join(PAGES, 'training_cost.md')) as f:
        text = f.read()
    block = text[text.index('input-grad floor  '):]
    costs = {}
    for line in block.splitlines():
        match = re.match(r'^(\S[\w -]*?)\s{2,}([\d,]+)\s+(\d+)\s+(\d+)\s+'
                         r'(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+)\s', line)
        if not match:
            break
        costs[match[1]] = dict(train_memory_bytes=int(match[7]) * 2**20,
                               step_time_s=float(match[8]))
    return costs


def main():
    rows = compare_rows()
    plot_accuracy_vs_parameters(
        rows, osp.join(OUT, 'compare_accuracy_vs_params.png'))
    costs = training_costs()
    plot_costs(costs, (('train_memory_bytes', 'training memory (MiB)',
                        2**-20), ('step_time_s', 'training step (s)', 1.)),
               osp.join(OUT, 'training_cost_vit-b16.png'))
    print(f'{len(rows)} comparison rows, {len(costs)} cost rows -> {OUT}')


if __name__ == '__main__':
    main()
