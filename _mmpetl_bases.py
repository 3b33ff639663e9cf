# Copyright (c) mmpetl contributors. All rights reserved.
"""Let ``_base_ = 'mmpetl::...'`` resolve in programs that never import
mmpetl before reading their config: the toolboxes' own ``tools/train.py``
(mmpretrain's, mmseg's, mmdet's, mmaction2's) read it with
``Config.fromfile`` first, and process ``custom_imports`` only after the
bases, so mmengine fails with "mmengine does not support to load mmpetl
config".

The wheel and the editable install (``setup.py``) put ``mmpetl_bases.pth``
into site-packages. Its one line runs at every interpreter start-up, so it
imports nothing: it puts a class named :data:`HOOK` first in
``sys.meta_path`` whose ``find_spec`` compares the module name with
``mmengine.config.config`` and returns None for every other import. Only
when mmengine's config module is imported does it import this module, whose
:func:`find_spec` removes the hook, finds the module with the other finders
and wraps ``Config._get_cfg_path`` once the module has run, so that the
first ``mmpetl::`` path imports mmpetl, whose
:func:`mmpetl.utils.compat.register_config_package` resolves it (the one
implementation of ``mmpetl::``); every other path goes to mmengine as before.
A Python start that never imports mmengine pays for one line of ``exec``
(``tools/benchmarks/startup.py`` measures it).
"""
import sys

#: The name of the hook class that ``mmpetl_bases.pth`` creates.
HOOK = '_MMPetlBasesHook'
_PREFIX = 'mmpetl::'


def patch_config(config_cls) -> None:
    """Wrap ``config_cls._get_cfg_path`` (see the module docstring)."""
    resolve = config_cls._get_cfg_path

    def _get_cfg_path(cfg_path, filename):
        if cfg_path.startswith(_PREFIX) and 'mmpetl' not in sys.modules:
            import mmpetl  # noqa: F401  (registers the mmpetl:: resolution)
            return config_cls._get_cfg_path(cfg_path, filename)
        return resolve(cfg_path, filename)

    config_cls._get_cfg_path = staticmethod(_get_cfg_path)


def find_spec(name: str, path=None):
    """The spec of mmengine's config module ``name`` as the other finders
    of ``sys.meta_path`` give it, its loader patching ``Config`` after the
    module has run. Called by the hook of ``mmpetl_bases.pth``, which is
    removed here (every copy: a wheel and an editable install may both
    have put one)."""
    sys.meta_path[:] = [finder for finder in sys.meta_path
                        if getattr(finder, '__name__', None) != HOOK]
    for finder in sys.meta_path:
        find = getattr(finder, 'find_spec', None)
        spec = find(name, path) if find is not None else None
        if spec is not None:
            break
    else:
        return None
    if spec.loader is None:
        return spec
    exec_module = spec.loader.exec_module

    def exec_and_patch(module):
        exec_module(module)
        patch_config(module.Config)

    spec.loader.exec_module = exec_and_patch
    return spec
