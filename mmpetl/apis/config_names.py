# Copyright (c) mmpetl contributors. All rights reserved.
"""Configs named on the command line as a file, as ``pkg::path`` or by the
name of a shipped config, for every tool that takes a config::

    python -m mmpetl train my_config.py                       # a file
    python -m mmpetl train mmpetl::quickstart/vit-tiny_digits0-4_pretrain.py
    python -m mmpetl train vit-tiny_digits0-4_pretrain        # a name
    python -m mmpetl train mmpretrain::resnet/resnet18_8xb16_cifar10.py

A path that exists is used as it is. ``pkg::path`` is resolved as
mmengine resolves it in ``_base_`` (``mmpetl::`` from mmpetl's configs,
``mmpretrain::`` from mmpretrain's, ...). Otherwise the argument is looked
up among mmpetl's shipped configs as ``mim`` looks up a config name: a path
relative to the configs folder, else a file of that name (``.py`` may be
left out) anywhere under it, outside ``_base_`` folders; it must be unique.
"""
import argparse
import difflib
import os
import os.path as osp
from typing import List

from mmengine.config import Config

from ..utils import InputError
from ..utils.compat import PACKAGE_PREFIX, config_dir


class ConfigNameError(InputError, FileNotFoundError):
    """A config argument that names no file and no shipped config."""


def shipped_configs(root: str) -> List[str]:
    """Every config under ``root`` but the ``_base_`` folders, relative."""
    found = []
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(d for d in subfolders
                               if d not in ('_base_', '__pycache__'))
        found += [osp.relpath(osp.join(folder, f), root)
                  for f in sorted(files) if f.endswith('.py')]
    return found


def find_config(name: str) -> str:
    """The file of the config named ``name`` (see the module docstring).

    Raises:
        ConfigNameError: One line naming the argument and, for a name, the
            closest shipped names or the several files it matches.
    """
    if osp.isfile(name):
        return name
    if '::' in name:
        try:
            path, _ = Config._get_cfg_path(name, '<command line>')
        except Exception as e:  # unknown or uninstalled package
            raise ConfigNameError(f'config {name}: {str(e).splitlines()[0]}')
        if not osp.isfile(path):
            raise ConfigNameError(f'config {name}: {path} does not exist')
        return path
    root = config_dir()
    shipped = osp.join(root, name)
    if not osp.isabs(name) and osp.isfile(shipped):
        return shipped
    wanted = osp.basename(name)
    wanted = wanted if wanted.endswith('.py') else f'{wanted}.py'
    configs = shipped_configs(root) if osp.isdir(root) else []
    matches = [c for c in configs if osp.basename(c) == wanted]
    if len(matches) == 1:
        return osp.join(root, matches[0])
    if matches:
        raise ConfigNameError(
            f'config {name}: several shipped configs have that name: '
            f'{", ".join(matches)}; give one as {PACKAGE_PREFIX}PATH')
    close = difflib.get_close_matches(
        wanted, sorted({osp.basename(c) for c in configs}), n=3)
    hint = f'; did you mean {", ".join(close)}?' if close else ''
    raise ConfigNameError(
        f'config {name} does not exist: no such file, nor a config shipped '
        f'with mmpetl ({PACKAGE_PREFIX}PATH or a name, as mim takes)'
        f'{hint}')


def config_arg(text: str) -> str:
    """:func:`find_config` as an argparse ``type``: the tools' parsers
    print its error as their one ``error:`` line (exit 2)."""
    try:
        return find_config(text)
    except ConfigNameError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
