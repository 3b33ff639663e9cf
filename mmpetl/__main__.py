# Copyright (c) mmpetl contributors. All rights reserved.
"""Run one of mmpetl's tools, from a wheel as from a checkout::

    python -m mmpetl train CONFIG [--work-dir DIR] ...
    python -m mmpetl reparam CONFIG CHECKPOINT OUT.pth --verify
    python -m mmpetl suites/vtab --methods repadapter --dry-run
    python -m mmpetl              # lists the tools

``TOOL`` is a script of ``tools/`` without ``.py`` (the wheel carries them
in ``mmpetl/.mim/tools``, as ``mim run mmpetl TOOL`` finds them). The tool
runs as ``python tools/TOOL.py``: in the current directory, where its
outputs go.
"""
import os
import os.path as osp
import runpy
import sys
from typing import List, Optional


def tools_dir() -> str:
    """``mmpetl/.mim/tools`` of this mmpetl package, else (a source
    checkout without the links of ``pip install -e .``) the checkout's
    ``tools``."""
    package = osp.dirname(osp.abspath(__file__))
    installed = osp.join(package, '.mim', 'tools')
    return installed if osp.isdir(installed) else osp.join(
        osp.dirname(package), 'tools')


def tool_names() -> List[str]:
    """The runnable tools, as ``python -m mmpetl`` names them."""
    root = tools_dir()
    names = []
    for folder in ('', 'suites', 'benchmarks', 'deployment',
                   'model_converters'):
        path = osp.join(root, folder)
        if osp.isdir(path):
            names += sorted(
                osp.join(folder, f[:-3]) for f in os.listdir(path)
                if f.endswith('.py') and not f.startswith('_'))
    return names


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ('-h', '--help'):
        print(__doc__.strip().replace('::\n', ':\n'))
        print('\ntools: ' + ', '.join(tool_names()))
        return 0
    tool = argv[0][:-3] if argv[0].endswith('.py') else argv[0]
    if tool not in tool_names():
        print(f'python -m mmpetl: no tool {argv[0]!r}; tools: '
              f'{", ".join(tool_names())}', file=sys.stderr)
        return 2
    path = osp.join(tools_dir(), f'{tool}.py')
    sys.argv = [path, *argv[1:]]
    runpy.run_path(path, run_name='__main__')
    return 0


if __name__ == '__main__':
    sys.exit(main())
