# Copyright (c) mmpetl contributors. All rights reserved.
"""mmpetl's output guard and argument types for the deployment tools,
without importing mmpetl.

The deployment tools run merged checkpoints without mmpetl (they show that
the merged model is the stock one: no mmpetl registry, no mmpetl fix is
active), yet their outputs follow the one output guard of every mmpetl
writer (``mmpetl/fileio/outputs.py``: never an input, an existing file
only with ``--force``, atomic writes, one line on a failed write) and
their flags the same argument types (``mmpetl/utils/arguments.py``). These
modules use only the standard library, mmengine and torch, so they are
loaded here from mmpetl's files as a private package
(``_mmpetl_files``), and ``mmpetl/__init__.py``, which applies mmpetl's
fixes and registers its modules, never runs.
"""
import importlib
import os.path as osp
import sys
import types

_PACKAGE = '_mmpetl_files'


def _package_dir() -> str:
    """mmpetl's folder: beside ``tools/`` in a checkout, above
    ``mmpetl/.mim/tools`` in an install, else on ``sys.path``."""
    here = osp.dirname(osp.abspath(__file__))
    candidates = [osp.join(here, '..', '..', 'mmpetl'),
                  osp.join(here, '..', '..', '..')]
    candidates += [osp.join(p or '.', 'mmpetl') for p in sys.path]
    for candidate in candidates:
        if osp.isfile(osp.join(candidate, 'fileio', 'outputs.py')):
            return osp.abspath(candidate)
    raise ImportError('cannot find mmpetl/fileio/outputs.py')


def _load(name: str) -> types.ModuleType:
    if _PACKAGE not in sys.modules:
        package = types.ModuleType(_PACKAGE)
        package.__path__ = [_package_dir()]
        sys.modules[_PACKAGE] = package
    return importlib.import_module(f'{_PACKAGE}.{name}')


outputs = _load('fileio.outputs')
configs = _load('fileio.configs')
arguments = _load('utils.arguments')
#: The base of every error these modules raise (one line, exit status 2).
InputError = _load('utils.errors').InputError


def run_inputs(config: str, checkpoint: str, *others: str) -> list:
    """The inputs of a deployment run: the config and all its bases, the
    checkpoint and ``others`` (input images, videos, frame folders)."""
    return [*configs.config_files(config), checkpoint, *others]
