# Copyright (c) mmpetl contributors. All rights reserved.
"""Config files: reading them, the files a run of one reads (its bases,
the checkpoints and data it names), and configs carried by checkpoints,
read as data.

**Configs in checkpoints are data.** A checkpoint carries the config it was
trained with (``meta['cfg']``, ``message_hub['runtime_info']['cfg']``);
mmengine's inferencers given ``weights`` without a config
(``MMSegInferencer(model=None, weights=ck)``) read it with
``Config.fromstring(text, '.py')``, which executes it, and a registry given
a ``type`` it does not know (``'os.system'``) imports it. Every config text
that a checkpoint loaded under the loading policy carries
(:func:`mmpetl.fileio.safe_load.carried_configs`) is read as data instead
(:func:`config_as_data`: literals, lists, tuples, dicts and ``dict(...)``),
and each ``type`` in it must be a name registered in the registries of a
known scope (:func:`check_config_types`); anything else is refused in one
line before any registry sees it.
"""
import ast
import importlib
import importlib.util
import os
import os.path as osp
from functools import lru_cache
from typing import Any, Iterator, List, Optional, Set

from mmengine.config import Config

from .errors import CheckpointError, UnsafeCheckpointError, first_line
from .safe_load import carried_configs, check_checkpoint_path


def load_config_file(path: str):
    """``Config.fromfile`` with a :class:`CheckpointError` on failure."""
    if not osp.isfile(path):
        raise CheckpointError(f'config {path} does not exist')
    try:
        return Config.fromfile(path)
    except Exception as e:
        raise CheckpointError(f'cannot read config {path} ({first_line(e)})')


def config_as_data(text: str, source: str) -> dict:
    """Read the config text a checkpoint carries (``meta['cfg']``, as
    ``Config.pretty_text`` writes it) as data, executing nothing: each
    statement must assign a literal, a list, a tuple, a dict or a
    ``dict(key=...)`` of such values to a name.

    mmengine's inferencers given ``weights`` but no config would run this
    text as a Python config file, i.e. any code a checkpoint carries
    (:func:`read_checkpoint_configs_as_data` has them read it here). The
    data is then checked by :func:`check_config_types`.

    Raises:
        CheckpointError: Anything else in ``text``; ``source`` names the
            checkpoint (:class:`UnsafeCheckpointError`: a type outside the
            known registries).
    """

    def refuse(node):
        raise CheckpointError(
            f'checkpoint {source} carries a config that is code, not data '
            f'(line {node.lineno}: {ast.unparse(node)[:60]}); give the '
            'config file instead of reading it from the checkpoint')

    def value(node):
        if isinstance(node, ast.Constant):
            return node.value
        if isinstance(node, (ast.List, ast.Tuple)):
            items = [value(item) for item in node.elts]
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Dict) and None not in node.keys:
            return {value(k): value(v) for k, v in zip(node.keys, node.values)}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id == 'dict' and not node.args and all(
                    k.arg for k in node.keywords):
            return {k.arg: value(k.value) for k in node.keywords}
        if isinstance(node, ast.UnaryOp) and isinstance(
                node.op, (ast.USub, ast.UAdd)) and isinstance(
                    node.operand, ast.Constant) and isinstance(
                        node.operand.value, (int, float)):
            number = node.operand.value
            return -number if isinstance(node.op, ast.USub) else number
        refuse(node)

    try:
        tree = ast.parse(text)
    except SyntaxError as e:
        raise CheckpointError(f'checkpoint {source} carries a config that '
                              f'is not valid Python ({first_line(e)})')
    cfg = {}
    for statement in tree.body:
        if not (isinstance(statement, ast.Assign)
                and len(statement.targets) == 1
                and isinstance(statement.targets[0], ast.Name)):
            refuse(statement)
        cfg[statement.targets[0].id] = value(statement.value)
    check_config_types(cfg, source)
    return cfg


#: Packages whose registries a config read from a checkpoint may name,
#: besides those of mmengine's table of OpenMMLab packages.
KNOWN_SCOPES = ('mmengine', 'mmpetl')


def known_scopes() -> Set[str]:
    """The scopes a config read from a checkpoint may name: mmengine,
    mmpetl and the OpenMMLab packages of mmengine's table."""
    from mmengine.config.utils import MODULE2PACKAGE
    return set(KNOWN_SCOPES) | set(MODULE2PACKAGE)


@lru_cache(maxsize=None)
def _scope_registries(scope: str) -> tuple:
    """Every registry of ``scope`` (mmengine's roots, or the children of
    that scope), with their modules imported as a build would import them
    (``Registry.import_from_location``). An uninstalled package has
    none."""
    import mmengine.registry as root
    from mmengine.registry import Registry
    roots = [r for r in vars(root).values() if isinstance(r, Registry)]
    if scope == 'mmengine':
        found = roots
    else:
        if importlib.util.find_spec(scope) is None:
            return ()
        try:
            importlib.import_module(f'{scope}.registry')
        except ImportError:
            return ()
        found = [r.children[scope] for r in roots if scope in r.children]
    for registry in found:
        registry.import_from_location()
    return tuple(found)


def _type_problem(value: Any, default_scope: Optional[str]) -> str:
    """Why ``value`` cannot be the ``type`` of a config read from a
    checkpoint (an empty string if it can)."""
    if not isinstance(value, str) or not value:
        return f'type {value!r} is not a registered name'
    scope, _, name = value.rpartition('.')
    scopes = known_scopes()
    if scope and scope not in scopes:
        return f'type {value!r} is not a registered name of a known scope'
    for candidate in ([scope] if scope else [default_scope, 'mmengine']):
        if candidate in scopes and any(
                name in registry.module_dict
                for registry in _scope_registries(candidate)):
            return ''
    return (f'type {value!r} is not registered in '
            f'{scope or default_scope or "mmengine"}')


def check_config_types(cfg: dict, source: str) -> None:
    """Raise :class:`UnsafeCheckpointError` unless every ``type`` in
    ``cfg`` (a config read from the checkpoint ``source``) is a name
    registered in a known scope (:func:`known_scopes`: ``'Name'`` in the
    config's ``default_scope`` or mmengine, ``'scope.Name'`` in that
    scope), every ``_scope_`` and the ``default_scope`` are known scopes,
    and it imports nothing (``custom_imports``): a registry imports a
    dotted name it does not know, which could run any code."""
    default_scope = cfg.get('default_scope')
    problems = []
    if default_scope is not None and default_scope not in known_scopes():
        problems.append(f'default_scope {default_scope!r} is not a known '
                        'scope')
    if 'custom_imports' in cfg:
        problems.append('custom_imports would import modules')

    def walk(node):
        if isinstance(node, dict):
            scope = node.get('_scope_', default_scope)
            if scope not in known_scopes() and scope is not None:
                problems.append(f'_scope_ {scope!r} is not a known scope')
            elif 'type' in node:
                problem = _type_problem(node['type'], scope)
                if problem:
                    problems.append(problem)
            for item in node.values():
                walk(item)
        elif isinstance(node, (list, tuple)):
            for item in node:
                walk(item)

    walk(cfg)
    if problems:
        raise UnsafeCheckpointError(
            f'checkpoint {source} carries a config that {problems[0]}; '
            'building it could run code. Give the config file instead of '
            'reading it from the checkpoint')


def read_checkpoint_configs_as_data() -> None:
    """Make ``Config.fromstring`` read a config text that a loaded
    checkpoint carries with :func:`config_as_data` (see above); any other
    text reads as before."""
    if getattr(Config.fromstring, 'reads_checkpoints_as_data', False):
        return
    fromstring = Config.fromstring

    def _fromstring(cfg_str: str, file_format: str) -> Config:
        source = carried_configs().get(cfg_str)
        if source is None:
            return fromstring(cfg_str, file_format)
        return Config(config_as_data(cfg_str, source))

    _fromstring.reads_checkpoints_as_data = True
    Config.fromstring = staticmethod(_fromstring)


def _pretrained_files(cfg) -> Iterator[str]:
    """Checkpoint files a config reads: ``load_from``, every ``init_cfg``
    ``checkpoint`` and every string ``pretrained``."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if isinstance(value, str) and (
                    key in ('load_from', 'pretrained') or
                    (key == 'checkpoint' and 'type' in cfg)):
                yield value
            else:
                yield from _pretrained_files(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            yield from _pretrained_files(value)


def _read_base_files(path: str) -> List[str]:
    """The files that ``with read_base(): from X import *`` of the config
    ``path`` reads, found as mmengine finds them (relative modules beside
    ``path``, ``package.a.b`` in the installed package)."""
    from mmengine.utils import get_installed_path
    if not Config._is_lazy_import(path):
        return []
    with open(path, encoding='utf-8') as f:
        modules = Config._get_base_modules(ast.parse(f.read()).body)
    files = []
    for module in modules:
        level = len(module) - len(module.lstrip('.'))
        parts = module[level:].split('.')
        if level:
            root = osp.join(osp.dirname(path), *['..'] * (level - 1))
        else:
            root, parts = get_installed_path(parts[0]), parts[1:]
        files.append(osp.join(root, *parts) + '.py')
    return files


def check_named_checkpoints(cfg) -> None:
    """:func:`check_checkpoint_path` for every local checkpoint that
    ``cfg`` loads (``load_from``, and in ``model`` every ``init_cfg``
    ``checkpoint`` and string ``pretrained``); URLs (``scheme://``) are
    left to the loader."""
    named = dict(load_from=cfg.get('load_from'), model=cfg.get('model'))
    for path in _pretrained_files(Config(named)._cfg_dict.to_dict()):
        if '://' not in path:
            check_checkpoint_path(osp.expanduser(path))


def config_files(path: str) -> List[str]:
    """``path`` and all its base files, recursively: ``_base_`` files
    (``pkg::`` bases resolved to the installed files) and the modules of
    ``with read_base()``."""
    files, todo = [], [path]
    while todo:
        current = osp.abspath(todo.pop())
        if current in files or not osp.isfile(current):
            continue
        files.append(current)
        try:
            todo.extend(_read_base_files(current))
            bases = Config._get_base_files(current)
        except Exception:  # unreadable: Config.fromfile reports it
            continue
        for base in bases:
            try:
                base_path, _ = Config._get_cfg_path(base, current)
            except Exception:
                continue
            if base_path:
                todo.append(base_path)
    return files


def _data_paths(cfg: Any) -> Iterator[str]:
    """The data a config's datasets read: each ``data_root``, and under it
    each ``ann_file`` and ``data_prefix`` folder (``split_file`` too)."""
    if isinstance(cfg, dict):
        root = cfg.get('data_root')
        root = root if isinstance(root, str) else ''
        named = [cfg.get(key) for key in ('ann_file', 'split_file')]
        prefix = cfg.get('data_prefix')
        named += list(prefix.values()) if isinstance(prefix, dict) else [
            prefix]
        if root and '://' not in root:
            yield root
        for path in named:
            if isinstance(path, str) and path and '://' not in path:
                yield osp.join(root, path)
        for value in cfg.values():
            yield from _data_paths(value)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            yield from _data_paths(value)


def data_inputs(cfg: Config) -> List[str]:
    """The data files and folders the datasets of ``cfg`` read (their
    ``data_root``, ``data_prefix`` and ``ann_file`` values) that exist; a
    folder that holds the work dir or the current folder is left out (its
    run's own outputs lie there), its annotation files stay."""
    work_dir = cfg.get('work_dir')
    keep = [osp.abspath(p) for p in (work_dir, os.getcwd()) if p]
    found = []
    for path in _data_paths(cfg._cfg_dict.to_dict()):
        path = osp.abspath(osp.expanduser(path))
        if not osp.exists(path) or path in found:
            continue
        if osp.isdir(path) and any(
                osp.commonpath([osp.realpath(path), osp.realpath(k)]) ==
                osp.realpath(path) for k in keep):
            continue
        found.append(path)
    return found


def run_input_files(config: str, cfg: Optional[Config] = None) -> List[str]:
    """Every file a run of ``config`` reads: the config, its ``_base_``
    files, the checkpoints it names and its data (:func:`data_inputs`; of
    ``cfg``, the config as loaded with any overrides, when given)."""
    if cfg is None:
        cfg = load_config_file(config)
    return config_files(config) + [
        osp.abspath(p) for p in _pretrained_files(cfg._cfg_dict.to_dict())
    ] + data_inputs(cfg)


__all__ = [
    'load_config_file', 'config_as_data', 'check_config_types',
    'known_scopes', 'read_checkpoint_configs_as_data',
    'check_named_checkpoints', 'config_files', 'data_inputs',
    'run_input_files'
]
