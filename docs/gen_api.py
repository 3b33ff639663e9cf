# Copyright (c) mmpetl contributors. All rights reserved.
"""Write docs/en/api/, the API reference (one page per module and an
index by package), from the package tree.

Run ``python docs/gen_api.py`` after adding or moving a module of
``mmpetl`` (``tests/test_docs.py`` checks that the pages cover every public
module). Each module gets a page ``docs/en/api/<module>.md`` holding its
``automodule``, listed in ``docs/en/api/index.md`` under the group of its
subpackage; autodoc fills in the docstrings when Sphinx builds.
"""
import os
import os.path as osp
import pkgutil
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, ROOT)

import mmpetl  # noqa: E402

GROUPS = [
    ('mmpetl', 'The package', 'What `import mmpetl` gives.'),
    ('mmpetl.models', 'Models: the contract, sites and wrappers',
     'What trains (`PETLModule`), where it acts and how it folds '
     '(`AdaptedSite` and its fold forms), the wrappers\' base classes, the '
     'attach-site table and the checks run at build and at the first '
     'training step.'),
    ('mmpetl.models.adapters', 'Methods',
     'One module per method: its PETL module and its registered wrapper.'),
    ('mmpetl.apis', 'APIs: merging, serving, tool options',
     'Merging checkpoints and configs, adapter switching, and the tools\' '
     'options.'),
    ('mmpetl.engine', 'Engine: hooks and schedulers', ''),
    ('mmpetl.fileio',
     'File I/O: safe loading, checked outputs, fingerprints', ''),
    ('mmpetl.utils', 'Utilities: errors, compatibility fixes, logs', ''),
    ('mmpetl.datasets', 'Datasets',
     'VTAB-1k, FGVC, few-shot, and the embedded real-data writers of the '
     'demo and the tests.'),
    ('mmpetl.suites', 'Suites: many runs, one table', ''),
    ('mmpetl.benchmarks', 'Benchmarks', ''),
    ('mmpetl.model_converters', 'Model converters', ''),
]


def modules():
    """Every public module of mmpetl (no ``_``-prefixed part), sorted."""
    names = ['mmpetl']
    for info in pkgutil.walk_packages(mmpetl.__path__, 'mmpetl.'):
        if not any(p.startswith('_') for p in info.name.split('.')):
            names.append(info.name)
    return sorted(names)


def group_of(name):
    """The entry of ``GROUPS`` whose package holds ``name`` most closely."""
    return max((g for g in GROUPS
                if name == g[0] or name.startswith(g[0] + '.')),
               key=lambda g: len(g[0]))


def main():
    api = osp.join(ROOT, 'docs', 'en', 'api')
    os.makedirs(api, exist_ok=True)
    for old in os.listdir(api):
        if old.endswith('.md'):
            os.remove(osp.join(api, old))
    out = ['# API reference', '',
           'Generated from the docstrings of the installed package, one page '
           'per module.', 'Each object is documented in the module that '
           'defines it; the packages re-export', 'the public names (`from '
           'mmpetl import RepAdapterBackbone`,', '`from mmpetl.models import '
           'AdapterBackbone`).', '',
           'Outside the package: `configs/` (one folder per task, each '
           'method\'s', '`_base_` and per-task files), `tools/` (train, test, '
           'reparam, demo;', '`suites/`, `benchmarks/`, `deployment/`, '
           '`model_converters/`; see [tools](../tools.md))', 'and `tests/` '
           '(with the shared fixtures in `tests/support/`).', '']
    by_group = {}
    for name in modules():
        by_group.setdefault(group_of(name), []).append(name)
        with open(osp.join(api, f'{name}.md'), 'w',
                  encoding='utf-8') as f:
            f.write('\n'.join([f'# `{name}`', '', '```{eval-rst}',
                               f'.. automodule:: {name}', '```', '']))
    for group in GROUPS:
        if group not in by_group:
            continue
        out += [f'## {group[1]}', '']
        if group[2]:
            out += [group[2], '']
        out += ['```{toctree}', ':maxdepth: 1', '',
                *by_group[group], '```', '']
    with open(osp.join(api, 'index.md'), 'w', encoding='utf-8') as f:
        f.write('\n'.join(out).rstrip('\n') + '\n')
    print(len(modules()), 'modules')


if __name__ == '__main__':
    main()
