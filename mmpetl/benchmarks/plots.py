# Copyright (c) mmpetl contributors. All rights reserved.
"""The figures of the suites and benchmarks, as PNG files next to their
tables (matplotlib, no display needed):

* :func:`plot_accuracy_vs_parameters`: ``tools/suites/vtab.py``'s
  ``results.png``, accuracy against trainable backbone parameters;
* :func:`plot_costs`: one horizontal bar chart per cost (training memory,
  step time, ...) per method, e.g. ``tools/benchmarks/training.py --out
  costs.json`` writes ``costs.png``, and the suite ``results_costs.png``
  from its ``--costs``.

Legible by construction: every method has its own colour and marker pair
and is named in the legend (no labels on the points to overlap); methods
with no trainable backbone parameters (linear probe) sit at 0 on a
symmetric-log axis, linear below the smallest non-zero count; bars are
sorted by value and named on their axis.
"""
import math
import os.path as osp
from typing import Dict, List, Sequence, Tuple

from ..fileio.outputs import atomic_output

#: 10 colours x 8 markers: a distinct pair for each of 80 methods.
COLOURS = ('tab:blue', 'tab:orange', 'tab:green', 'tab:red', 'tab:purple',
           'tab:brown', 'tab:pink', 'tab:gray', 'tab:olive', 'tab:cyan')
MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X', '*')


def _pyplot():
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt


def style(index: int) -> Tuple[str, str]:
    """(colour, marker) of the ``index``-th method: no two alike below
    ``len(COLOURS) * len(MARKERS)``."""
    return (COLOURS[index % len(COLOURS)],
            MARKERS[(index // len(COLOURS) + index) % len(MARKERS)])


def _save(figure, path: str) -> None:
    with atomic_output(path) as tmp:
        figure.savefig(tmp, format=osp.splitext(path)[1][1:] or 'png',
                       dpi=120, bbox_inches='tight')
    _pyplot().close(figure)


def plot_accuracy_vs_parameters(rows: List[dict], path: str) -> None:
    """Mean accuracy (the mean of group means where there are groups)
    against trainable backbone parameters, one point per method of
    ``rows`` (:func:`mmpetl.suites.task_suite.summarize`), with error bars
    of one standard deviation over seeds where there are several; written
    atomically to ``path``."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(7, 4.5))
    counts = [row['trainable_backbone'] or 0 for row in rows]
    positive = [c for c in counts if c > 0]
    for index, (row, params) in enumerate(zip(rows, counts)):
        column = 'mean_of_groups' if row.get('mean_of_groups') is not None \
            else 'mean'
        if row.get(column) is None:
            continue
        colour, marker = style(index)
        axes.errorbar(params, row[column], yerr=row.get(f'{column}_std'),
                      fmt=marker, color=colour, markersize=7, capsize=3,
                      label=f'{row["method"]} ({params:,})')
    # Zero sits at 0, linear up to the smallest count, logarithmic above.
    threshold = 10**math.floor(math.log10(min(positive))) if positive else 1
    axes.set_xscale('symlog', linthresh=threshold, linscale=0.5)
    axes.set_xlim(left=-0.1 * threshold)
    axes.set_xlabel('trainable backbone parameters (0, then log scale)')
    axes.set_ylabel('top-1 (%)' + (' (mean ± std over seeds)' if any(
        (r.get('seeds') or 1) > 1 for r in rows) else ''))
    axes.grid(True, alpha=0.3)
    axes.legend(loc='upper left', bbox_to_anchor=(1.02, 1), fontsize=8,
                frameon=False, ncol=1 if len(rows) <= 20 else 2)
    _save(figure, path)


def plot_costs(costs: Dict[str, Dict[str, float]],
               panels: Sequence[Tuple[str, str, float]], path: str) -> bool:
    """One horizontal bar chart per ``(key, axis label, scale)`` of
    ``panels`` (the value of ``key`` times ``scale``, e.g. bytes to MiB),
    every method of ``costs`` (``{method: {key: value}}``) that has it,
    sorted by the value; panels no method has are left out, and nothing is
    written if none is left. Written atomically to ``path``. Returns
    whether it was written."""
    panels = [p for p in panels
              if any(v.get(p[0]) is not None for v in costs.values())]
    if not panels:
        return False
    plt = _pyplot()
    height = 0.8 + 0.28 * len(costs)
    figure, axes = plt.subplots(1, len(panels), squeeze=False,
                                figsize=(4.5 * len(panels), height))
    order = {method: i for i, method in enumerate(costs)}
    for ax, (key, label, scale) in zip(axes[0], panels):
        values = sorted(((v[key] * scale, m) for m, v in costs.items()
                         if v.get(key) is not None), reverse=True)
        names = [m for _, m in values]
        ax.barh(names, [v for v, _ in values],
                color=[style(order[m])[0] for m in names])
        for y, (value, _) in enumerate(values):
            ax.annotate(f'{value:.3g}' if value < 1000 else f'{value:,.0f}',
                        (value, y), xytext=(3, 0),
                        textcoords='offset points', va='center', fontsize=8)
        ax.set_xlabel(label)
        ax.margins(x=0.15)
        ax.grid(True, axis='x', alpha=0.3)
    figure.tight_layout()
    _save(figure, path)
    return True
