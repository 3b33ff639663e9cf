# Copyright (c) mmpetl contributors. All rights reserved.
"""Let ``_base_ = 'mmpetl::...'`` resolve in programs that never import
mmpetl before reading their config: the toolboxes' own ``tools/train.py``
(mmpretrain's, mmseg's, mmdet's, mmaction2's) read it with
``Config.fromfile`` first, and process ``custom_imports`` only after the
bases, so mmengine fails with "mmengine does not support to load mmpetl
config".

The wheel installs ``mmpetl_bases.pth``, which imports this module at
interpreter start-up. It only waits (standard library only, no import of
mmengine or torch): when ``mmengine.config.config`` is imported, it wraps
``Config._get_cfg_path`` so that the first ``mmpetl::`` path imports mmpetl,
whose :func:`mmpetl.utils.compat.register_config_package` resolves it (the one
implementation of ``mmpetl::``), and every other path goes to mmengine as
before.
"""
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import PathFinder

_CONFIG_MODULE = 'mmengine.config.config'
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


class _ConfigModuleFinder(MetaPathFinder):
    """Patches mmengine's Config once its module has run, then leaves."""

    def find_spec(self, name, path=None, target=None):
        if name != _CONFIG_MODULE:
            return None
        sys.meta_path.remove(self)
        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            patch_config(module.Config)

        spec.loader.exec_module = exec_and_patch
        return spec


def install() -> None:
    """Called by ``mmpetl_bases.pth`` at start-up."""
    if _CONFIG_MODULE in sys.modules:
        patch_config(sys.modules[_CONFIG_MODULE].Config)
    elif not any(isinstance(f, _ConfigModuleFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _ConfigModuleFinder())
