# Copyright (c) mmpetl contributors. All rights reserved.
"""Reading and writing checkpoint files with clear errors.

**Loading policy.** Every local checkpoint (the runner's ``load_from`` and
``--resume``, ``init_cfg=dict(type='Pretrained')``, mmengine's
``load_checkpoint``, the tools and converters) is unpickled with
``torch.load(weights_only=True)`` plus an allow-list of exactly the types
that mmengine, the OpenMMLab toolboxes and mmpetl put in checkpoints
(:data:`SAFE_GLOBALS`: mmengine's ``HistoryBuffer``, NumPy arrays, scalars
and dtypes). A file that needs any other type is refused with one line
naming the type: unpickling it could run arbitrary code. For files you
trust, ``MMPETL_TRUSTED_CHECKPOINTS=1`` loads them with full unpickling
(``weights_only=False``); it is never the default.

The same policy covers every scheme mmengine's ``CheckpointLoader``
resolves (:func:`register_checkpoint_loaders`): ``http(s)://`` URLs are
downloaded into torch.hub's cache as mmengine does, then unpickled as a
local file is; ``torchvision://``, ``modelzoo://``, ``open-mmlab://``,
``openmmlab://`` and ``mmcls://`` names go through mmengine's tables to
such a URL (or a local file); ``s3://`` and ``petrel://`` are read into
memory and unpickled the same way. A scheme with no safe loader here
(``pavi://``, or one another package registered) is refused, unless
``MMPETL_TRUSTED_CHECKPOINTS`` is on.

The environment switches (:func:`env_flag`) take ``1``, ``true``, ``yes``,
``on`` or ``0``, ``false``, ``no``, ``off`` and the empty string; any other
value is an error, never a silent "yes".

Writes are atomic (a temporary file in the destination folder, then
``os.replace``, mode 0644 under the usual umask), never touch the inputs,
and refuse to replace an existing file unless asked.
"""
import ast
import importlib
import inspect
import io
import logging
import os
import os.path as osp
import pickle
import re
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from functools import lru_cache
from typing import (Any, Callable, Dict, Iterable, Iterator, List, Optional,
                    Tuple)

import torch
from mmengine.config import Config
from mmengine.fileio import LocalBackend, register_backend
from torch import nn

from ..utils.errors import InputError

#: Set to 1 to unpickle checkpoints without the allow-list (trusted files
#: only: a malicious file can run code when loaded this way).
TRUSTED_CHECKPOINTS_ENV = 'MMPETL_TRUSTED_CHECKPOINTS'
#: Set to 1 to load adapter checkpoints onto another backbone anyway
#: (:mod:`mmpetl.fileio.fingerprint`).
IGNORE_FINGERPRINT_ENV = 'MMPETL_IGNORE_FINGERPRINT'
#: The environment switches of mmpetl (see :func:`env_flag`).
ENV_FLAGS = (TRUSTED_CHECKPOINTS_ENV, IGNORE_FINGERPRINT_ENV)

#: What a checkpoint may hold besides tensors and plain Python containers,
#: as ``module.name``. Found by saving and loading real Runner checkpoints
#: (tests/test_trust.py): the message hub's ``HistoryBuffer`` (its state is
#: NumPy arrays, which pickle ``bytes``, and its statistics methods, which
#: pickle as ``getattr(HistoryBuffer, 'mean')``: see
#: :func:`class_function`), NumPy scalars in metrics and runtime info, and
#: the NumPy dtypes these pickle with. NumPy 1 and 2 pickle the same
#: functions under ``numpy.core`` and ``numpy._core``.
SAFE_GLOBALS = (
    'builtins.bytes',
    'mmengine.logging.history_buffer.HistoryBuffer',
    'numpy.ndarray',
    'numpy.dtype',
    'numpy.core.multiarray._reconstruct',
    'numpy.core.multiarray.scalar',
    'numpy._core.multiarray._reconstruct',
    'numpy._core.multiarray.scalar',
)


class CheckpointError(InputError, ValueError):
    """A checkpoint or config given to a tool is unusable; the message says
    which file and why."""


def first_line(error: BaseException) -> str:
    """``Type: first line of the message``, for one-line error reports."""
    message = str(error).strip().split('\n')[0]
    return f'{type(error).__name__}: {message}'


def load_config_file(path: str):
    """``Config.fromfile`` with a :class:`CheckpointError` on failure."""
    if not osp.isfile(path):
        raise CheckpointError(f'config {path} does not exist')
    try:
        return Config.fromfile(path)
    except Exception as e:
        raise CheckpointError(f'cannot read config {path} ({first_line(e)})')


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint needs a type outside :data:`SAFE_GLOBALS` to load."""


#: Spellings that switch an environment switch on, compared without case.
TRUE_VALUES = ('1', 'true', 'yes', 'on')
#: Spellings that switch an environment switch off (empty included).
FALSE_VALUES = ('', '0', 'false', 'no', 'off')


def env_flag(name: str) -> bool:
    """The environment switch ``name``: ``True`` for one of
    :data:`TRUE_VALUES`, ``False`` for one of :data:`FALSE_VALUES` (or
    unset); any other value raises :class:`CheckpointError`."""
    value = os.environ.get(name, '')
    if value.strip().lower() in TRUE_VALUES:
        return True
    if value.strip().lower() in FALSE_VALUES:
        return False
    raise CheckpointError(
        f'environment variable {name}={value!r} is neither on '
        f'({", ".join(TRUE_VALUES)}) nor off ({", ".join(FALSE_VALUES[1:])} '
        'or empty); set it to one of these')


def check_env_flags() -> None:
    """Parse every mmpetl environment switch now (tools call this first),
    so that a misspelt value fails before any work, not at first use."""
    for name in ENV_FLAGS:
        env_flag(name)


def trusted_checkpoints() -> bool:
    """Whether ``MMPETL_TRUSTED_CHECKPOINTS`` turns the allow-list off."""
    return env_flag(TRUSTED_CHECKPOINTS_ENV)


def _resolve(qualified: str) -> object:
    module, _, name = qualified.rpartition('.')
    return getattr(importlib.import_module(module), name)


def class_function(owner: type, name: str) -> object:
    """What checkpoints get for ``builtins.getattr``: a function defined in
    an allow-listed class (``getattr(HistoryBuffer, 'mean')``), nothing else
    (a free ``getattr`` would reach any object, e.g. ``builtins`` through
    ``getattr.__self__``)."""
    allowed = [g for g in safe_globals() if isinstance(g, type)]
    if owner in allowed and not name.startswith('_') and \
            inspect.isfunction(vars(owner).get(name)):
        return getattr(owner, name)
    raise pickle.UnpicklingError(
        f'Unsupported global: GLOBAL builtins.getattr({owner!r}, {name!r})')


@lru_cache(maxsize=None)
def safe_globals() -> Tuple[object, ...]:
    """:data:`SAFE_GLOBALS` as objects (entries that this NumPy lacks
    skipped), plus every NumPy dtype class and :func:`class_function` as
    ``builtins.getattr``, for ``torch.serialization.safe_globals``. An
    object pickled under another name than its own (``numpy.core`` under
    NumPy 2) is given with that name."""
    import numpy as np
    found: List[object] = []
    for qualified in SAFE_GLOBALS:
        try:
            obj = _resolve(qualified)
        except (ImportError, AttributeError):
            continue
        own = f'{getattr(obj, "__module__", "")}.{obj.__qualname__}'
        found.append(obj if own == qualified else (obj, qualified))
    found.extend({type(np.dtype(code)) for code in np.typecodes['All']})
    found.append((class_function, 'builtins.getattr'))
    return tuple(found)


# torch words it "Unsupported global: GLOBAL m.f was not an allowed global"
# or "unsupported GLOBAL m.f whose module m is blocked".
_UNSUPPORTED_GLOBAL = re.compile(
    r'[Uu]nsupported (?:global: )?GLOBAL ([\w.]+)')


def _unpickling_error(path: str, error: Exception) -> CheckpointError:
    """One line for torch's many-line ``weights_only`` refusal."""
    message = str(error)
    unsafe = _UNSUPPORTED_GLOBAL.search(message)
    if unsafe:
        return UnsafeCheckpointError(
            f'checkpoint {path} needs {unsafe.group(1)}, which is not among '
            'the types allowed in checkpoints; loading it could run code. '
            f'Only if you trust this file, set {TRUSTED_CHECKPOINTS_ENV}=1')
    _, found, rest = message.partition('error:')
    lines = [line.strip() for line in rest.splitlines() if line.strip()]
    detail = lines[0] if found and lines else first_line(error)
    return CheckpointError(f'{path} is not a PyTorch checkpoint ({detail})')


def load_local_checkpoint(filename: str, map_location=None):
    """Load a local checkpoint file with the loading policy above.

    Registered as mmengine's local-file loader by
    :mod:`mmpetl.utils.compat`, so the runner, ``init_cfg`` Pretrained and
    ``load_checkpoint`` use it.

    Raises:
        FileNotFoundError: ``filename`` does not exist.
        CheckpointError: It is a directory, or not a PyTorch file
            (:class:`UnsafeCheckpointError`: it needs a type outside the
            allow-list).
    """
    filename = osp.expanduser(filename)
    if not osp.exists(filename):
        raise FileNotFoundError(f'{filename} can not be found.')
    check_checkpoint_path(filename)
    return _load_with_policy(
        lambda weights_only: torch.load(
            filename, map_location=map_location, weights_only=weights_only),
        filename)


def _load_with_policy(load: Callable[[bool], Any], source: str) -> Any:
    """``load(weights_only)`` under the loading policy: with the allow-list
    (:class:`UnsafeCheckpointError` for anything else), or with full
    unpickling when ``MMPETL_TRUSTED_CHECKPOINTS`` is on. ``source`` names
    the checkpoint in errors."""
    if trusted_checkpoints():
        return load(False)
    try:
        with torch.serialization.safe_globals(list(safe_globals())):
            return load(True)
    except pickle.UnpicklingError as e:
        raise _unpickling_error(source, e) from None
    except (RuntimeError, EOFError, ValueError) as e:  # truncated, foreign
        if isinstance(e, CheckpointError):
            raise
        raise CheckpointError(
            f'{source} is not a PyTorch checkpoint ({first_line(e)})') \
            from None


def load_url_checkpoint(url: str, map_location=None):
    """Load an ``http(s)://`` checkpoint with the loading policy.

    As mmengine's ``load_from_http``: downloaded once into torch.hub's
    cache (``$TORCH_HOME/hub/checkpoints``; a cached file is not fetched
    again), by rank 0 first in a distributed run, then loaded on every
    rank; but unpickled as a local file is, not with
    ``weights_only=False``.
    """
    from mmengine.dist import get_dist_info

    def load(weights_only):
        return torch.hub.load_state_dict_from_url(
            url, map_location=map_location, progress=False,
            weights_only=weights_only)

    rank, world_size = get_dist_info()
    if rank == 0:
        checkpoint = _load_with_policy(load, url)
    if world_size > 1:
        torch.distributed.barrier()
        if rank > 0:
            checkpoint = _load_with_policy(load, url)
    return checkpoint


def _zoo_url(table: Dict[str, str], filename: str) -> str:
    """The URL (or mmengine-home path) that ``scheme://name`` stands for in
    one of mmengine's model tables."""
    name = filename.split('://', 1)[1]
    if name not in table:
        raise CheckpointError(f'checkpoint {filename}: mmengine knows no '
                              f'model named {name!r} for this scheme')
    return table[name]


def load_torchvision_checkpoint(filename: str, map_location=None):
    """``torchvision://name`` (``modelzoo://name``), through mmengine's
    table of torchvision URLs, with the loading policy."""
    from mmengine.runner.checkpoint import get_torchvision_models
    return load_url_checkpoint(
        _zoo_url(get_torchvision_models(), filename), map_location)


def load_openmmlab_checkpoint(filename: str, map_location=None):
    """``open-mmlab://name`` (``openmmlab://name``), through mmengine's
    tables (deprecated names renamed), with the loading policy: a URL, or
    a file under the mmengine home folder."""
    from mmengine.runner.checkpoint import (_get_mmengine_home,
                                            get_deprecated_model_names,
                                            get_external_models)
    scheme, name = filename.split('://', 1)
    name = get_deprecated_model_names().get(name, name)
    url = _zoo_url(get_external_models(), f'{scheme}://{name}')
    if url.startswith(('http://', 'https://')):
        return load_url_checkpoint(url, map_location)
    return load_local_checkpoint(
        osp.join(_get_mmengine_home(), url), map_location)


def load_mmcls_checkpoint(filename: str, map_location=None):
    """``mmcls://name``, through mmengine's table, with the loading policy
    (and mmengine's renaming of the mmcls keys)."""
    from mmengine.runner.checkpoint import (_process_mmcls_checkpoint,
                                            get_mmcls_models)
    return _process_mmcls_checkpoint(load_url_checkpoint(
        _zoo_url(get_mmcls_models(), filename), map_location))


def load_ceph_checkpoint(filename: str, map_location=None):
    """``s3://`` / ``petrel://`` files, read into memory by mmengine's
    petrel backend, with the loading policy."""
    from mmengine.fileio import get_file_backend
    backend = get_file_backend(filename, backend_args={'backend': 'petrel'})
    with io.BytesIO(backend.get(filename)) as buffer:
        return _load_with_policy(
            lambda weights_only: torch.load(
                buffer, map_location=map_location, weights_only=weights_only),
            filename)


#: mmengine's checkpoint schemes and their loaders under the policy.
SAFE_SCHEME_LOADERS = {
    '': load_local_checkpoint,
    'http://': load_url_checkpoint,
    'https://': load_url_checkpoint,
    'modelzoo://': load_torchvision_checkpoint,
    'torchvision://': load_torchvision_checkpoint,
    'open-mmlab://': load_openmmlab_checkpoint,
    'openmmlab://': load_openmmlab_checkpoint,
    'mmcls://': load_mmcls_checkpoint,
    r'(\S+\:)?s3://': load_ceph_checkpoint,
    r'(\S+\:)?petrel://': load_ceph_checkpoint,
}


def refusing_loader(prefix: str, loader: Callable) -> Callable:
    """A loader for a scheme without a safe one: refuses, naming the opt-in;
    with ``MMPETL_TRUSTED_CHECKPOINTS`` on, it calls ``loader``."""

    def load_from_trusted_only(filename, map_location=None):
        if trusted_checkpoints():
            return loader(filename, map_location)
        raise UnsafeCheckpointError(
            f'checkpoint {filename}: its scheme ({prefix}) has no safe '
            'loader, loading it could run code. Only if you trust this file, '
            f'set {TRUSTED_CHECKPOINTS_ENV}=1')

    load_from_trusted_only.mmpetl_policy = True
    return load_from_trusted_only


def register_checkpoint_loaders() -> None:
    """Put every scheme of mmengine's ``CheckpointLoader`` under the
    loading policy: the loaders of :data:`SAFE_SCHEME_LOADERS`, and
    :func:`refusing_loader` for any other scheme registered so far."""
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefix, loader in list(CheckpointLoader._schemes.items()):
        if prefix not in SAFE_SCHEME_LOADERS and not getattr(
                loader, 'mmpetl_policy', False):
            CheckpointLoader.register_scheme(
                prefix, refusing_loader(prefix, loader), force=True)
    for prefix, loader in SAFE_SCHEME_LOADERS.items():
        CheckpointLoader.register_scheme(prefix, loader, force=True)


def check_checkpoint_path(path: str) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a file."""
    if osp.isdir(path):
        raise CheckpointError(f'checkpoint {path} is a directory, not a '
                              'checkpoint file')
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint {path} does not exist')


def config_as_data(text: str, source: str) -> dict:
    """Read the config text a checkpoint carries (``meta['cfg']``, as
    ``Config.pretty_text`` writes it) as data, executing nothing: each
    statement must assign a literal, a list, a tuple, a dict or a
    ``dict(key=...)`` of such values to a name.

    mmengine's inferencers given ``weights`` but no config would run this
    text as a Python config file, i.e. any code a checkpoint carries
    (:mod:`mmpetl.utils.compat` has them read it here instead).

    Raises:
        CheckpointError: Anything else in ``text``; ``source`` names the
            checkpoint.
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
    return cfg


def load_checkpoint_dict(path: str) -> dict:
    """Load the dict that a PyTorch checkpoint file ``path`` holds, of any
    layout, with the loading policy above (on the CPU)."""
    check_checkpoint_path(path)
    try:
        checkpoint = load_local_checkpoint(path, map_location='cpu')
    except CheckpointError:
        raise
    except Exception as e:  # torch raises many types for foreign files
        raise CheckpointError(
            f'{path} is not a PyTorch checkpoint ({first_line(e)})')
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f'{path} is not a checkpoint: it holds a '
                              f'{type(checkpoint).__name__}, not a dict')
    return checkpoint


def load_checkpoint_file(path: str) -> dict:
    """Load an OpenMMLab checkpoint (``state_dict`` of tensors, or a bare
    state dict) from ``path``; see :func:`load_checkpoint_dict`."""
    checkpoint = load_checkpoint_dict(path)
    state_dict = checkpoint.get('state_dict', checkpoint)
    if not isinstance(state_dict, dict) or not state_dict or not all(
            isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise CheckpointError(f'{path} is not a model checkpoint: it has no '
                              'state_dict of tensors')
    return checkpoint


def model_state_dict(checkpoint: dict) -> 'OrderedDict[str, torch.Tensor]':
    """The checkpoint's state dict, without DDP's ``module.`` prefix, with
    its metadata (which holds the backbone fingerprint)."""

    def strip(key):
        return key[len('module.'):] if key.startswith('module.') else key

    state_dict = checkpoint.get('state_dict', checkpoint)
    result = OrderedDict((strip(k), v) for k, v in state_dict.items())
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is not None:
        result._metadata = OrderedDict(
            ('' if k == 'module' else strip(k), v)
            for k, v in metadata.items())
    return result


def check_tensor_kinds(model: nn.Module, state_dict: Dict,
                       source: str) -> None:
    """Raise :class:`CheckpointError` for a tensor of ``state_dict`` that
    cannot be a weight of ``model``: sparse or another layout than dense,
    on the ``meta`` device (no values), holding NaN or Inf, or integer
    where the model's tensor of that name is floating point (``copy_``
    would convert it without a word)."""
    own = model.state_dict(keep_vars=True)
    for key, value in state_dict.items():
        if not isinstance(value, torch.Tensor):
            continue
        if value.layout != torch.strided or value.is_meta:
            kind = 'on the meta device (no values)' if value.is_meta else \
                f'of layout {value.layout}'
            raise CheckpointError(f'checkpoint {source}: {key} is a tensor '
                                  f'{kind}; weights are dense tensors')
        target = own.get(key)
        if isinstance(target, torch.Tensor) and target.is_floating_point() \
                and not value.is_floating_point():
            raise CheckpointError(
                f'checkpoint {source}: {key} is {value.dtype}, but the '
                f"model's {key} is {target.dtype}; weights are floating "
                'point')
    check_finite(state_dict, f'checkpoint {source}')


def load_matching_state_dict(model: nn.Module, state_dict: Dict,
                             source: str) -> None:
    """Load ``state_dict`` strictly (frozen backbone weights may be absent
    from adapter checkpoints), raising :class:`CheckpointError` on any
    mismatch (see also :func:`check_tensor_kinds`)."""
    check_tensor_kinds(model, state_dict, source)
    try:
        result = model.load_state_dict(state_dict, strict=False)
    except CheckpointError as e:  # e.g. trained on another backbone
        raise type(e)(f'checkpoint {source}: {e}') from None
    except RuntimeError as e:
        detail = str(e).strip().split('\n')
        detail = next((line.strip() for line in detail[1:] if line.strip()),
                      detail[0])
        raise CheckpointError(
            f'checkpoint {source} does not match the config: {detail}')
    # Keys the checkpoint has but the model's own load hook drops (Swin V2
    # re-computes its index buffers) are not missing.
    missing = [k for k in result.missing_keys if k not in state_dict]
    problems = []
    for name, keys in (('missing', missing),
                       ('unexpected', result.unexpected_keys)):
        if keys:
            shown = ', '.join(keys[:3]) + (', ...' if len(keys) > 3 else '')
            problems.append(f'{len(keys)} {name} keys ({shown})')
    if problems:
        raise CheckpointError(f'checkpoint {source} does not match the '
                              f'config: {"; ".join(problems)}')


def _stored_values(tensor: torch.Tensor) -> torch.Tensor:
    """``tensor``, or if it is a view with more elements than its storage
    holds (e.g. a stride-0 10^6 x 10^6 expansion of one number, which a
    177 kB file can hold), its storage as a flat tensor: the values it
    shows, without expanding them."""
    stored = tensor.untyped_storage().nbytes() // tensor.element_size()
    if tensor.numel() <= stored:
        return tensor
    flat = torch.empty(0, dtype=tensor.dtype, device=tensor.device)
    return flat.set_(tensor.untyped_storage())


def non_finite_entries(state_dict: Dict) -> List[Tuple[str, int]]:
    """``(key, count)`` of every floating tensor holding NaN or Inf (in its
    stored values; dense tensors only)."""
    found = []
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and (
                value.is_floating_point() or value.is_complex()) and \
                value.layout == torch.strided and not value.is_meta:
            bad = int((~torch.isfinite(_stored_values(value))).sum())
            if bad:
                found.append((key, bad))
    return found


def check_finite(state_dict: Dict, what: str) -> None:
    """Raise :class:`CheckpointError` naming the first parameter of
    ``state_dict`` with NaN or Inf values; ``what`` names the weights."""
    bad = non_finite_entries(state_dict)
    if bad:
        key, count = bad[0]
        more = f' (and {len(bad) - 1} more tensors)' if len(bad) > 1 else ''
        raise CheckpointError(f'{what} has non-finite weights: {key} holds '
                              f'{count:,} NaN/Inf values{more}')


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


def run_input_files(config: str, cfg=None) -> List[str]:
    """Every file a run of ``config`` reads besides the data: the config,
    its ``_base_`` files and the checkpoints it names (of ``cfg``, the
    config as loaded with any overrides, when given)."""
    if cfg is None:
        cfg = load_config_file(config)
    return config_files(config) + [
        osp.abspath(p) for p in _pretrained_files(cfg._cfg_dict.to_dict())
    ]


#: The inputs of the run in this process (:func:`protected_inputs`).
_PROTECTED_INPUTS: List[str] = []


@contextmanager
def protected_inputs(paths: Iterable[str]) -> Iterator[None]:
    """Within the context, no write of mmpetl (:func:`atomic_output`: the
    tools' outputs, :class:`~mmpetl.ReparamCheckpointHook`) or of the
    runner (:class:`GuardedLocalBackend`: its checkpoints) may replace the
    files ``paths`` (those that exist), the inputs of the run."""
    added = [osp.abspath(p) for p in paths if p and osp.exists(p)]
    _PROTECTED_INPUTS.extend(added)
    try:
        yield
    finally:
        for path in added:
            _PROTECTED_INPUTS.remove(path)


def input_at(path: str, inputs: Iterable[str] = ()) -> Optional[str]:
    """The file of ``inputs`` or of the protected inputs that ``path`` is
    (``os.path.samefile``: links and linked folders are seen through), or
    ``None``."""
    if not osp.exists(path):
        return None
    for given in (*inputs, *_PROTECTED_INPUTS):
        if given and osp.exists(given) and osp.samefile(given, path):
            return given
    return None


def check_not_input(path: str, inputs: Iterable[str] = ()) -> None:
    """Raise :class:`CheckpointError` if ``path`` is an input (see
    :func:`input_at`)."""
    given = input_at(path, inputs)
    if given is not None:
        raise CheckpointError(f'output {path} is an input ({given}); '
                              'choose another output path')


def check_output_path(path: str,
                      force: bool,
                      *inputs: str,
                      make_folder: bool = False) -> None:
    """Refuse to write over an input (whatever ``force`` says), over an
    existing file unless ``force``, or into a folder that is missing (with
    ``make_folder``: that cannot be made) or not writable."""
    check_not_input(path, inputs)
    if osp.isdir(path):
        raise CheckpointError(f'output {path} is a directory')
    if osp.exists(path) and not force:
        raise CheckpointError(f'output {path} exists; pass --force to '
                              'replace it')
    folder = osp.dirname(osp.abspath(path))
    if make_folder and not osp.exists(folder):
        try:
            os.makedirs(folder)
        except OSError as e:
            raise CheckpointError(f'cannot make output folder {folder} '
                                  f'({first_line(e)})')
    if not osp.isdir(folder):
        raise CheckpointError(f'output folder {folder} does not exist')
    try:  # the only reliable test (root ignores permission bits)
        fd, probe = tempfile.mkstemp(prefix='.write-test.', dir=folder)
    except OSError as e:
        raise CheckpointError(f'output folder {folder} is not writable '
                              f'({first_line(e)})')
    os.close(fd)
    os.remove(probe)


def check_output_paths(outputs: Iterable[Optional[str]],
                       force: bool,
                       inputs: Iterable[str],
                       make_folders: bool = False) -> None:
    """:func:`check_output_path` for each given output against every input
    and against each other."""
    outputs = [o for o in outputs if o]
    inputs = list(inputs)
    for i, path in enumerate(outputs):
        check_output_path(path, force, *inputs, make_folder=make_folders)
        for other in outputs[:i]:
            if osp.realpath(other) == osp.realpath(path):
                raise CheckpointError(f'{path} is given as two outputs')


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces
    ``path`` in one rename (mode 0666 less the umask, as ``open`` gives),
    on failure it is removed. An input of the run (see
    :func:`protected_inputs`) is never replaced: :class:`CheckpointError`
    before anything is written."""
    check_not_input(path)
    folder, name = osp.split(osp.abspath(path))
    stem, ext = osp.splitext(name)
    fd, tmp = tempfile.mkstemp(prefix=f'.{stem}.', suffix=f'.tmp{ext}',
                               dir=folder)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, _file_mode())
        os.replace(tmp, path)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


def _write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_output`, flushed to
    the disk before the rename (a crash leaves the old file or the new
    one, never a part)."""
    with atomic_output(path) as tmp:
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


class GuardedLocalBackend(LocalBackend):
    """mmengine's local file backend, with the writes of
    :func:`atomic_output`.

    The runner saves checkpoints through this backend
    (``Runner.save_checkpoint``, ``CheckpointHook``): registered for local
    paths (:func:`register_file_backend`), it makes every checkpoint appear
    complete or not at all under its name (a killed process or a full disk
    leaves no truncated ``epoch_N.pth``), and refuses to replace an input
    of the run (:func:`protected_inputs`). ``CheckpointHook``'s removal of
    old checkpoints (``max_keep_ckpts``) keeps an input, with a warning.
    """

    def put(self, obj: bytes, filepath) -> None:
        os.makedirs(osp.dirname(osp.abspath(filepath)), exist_ok=True)
        _write_atomic(str(filepath), obj)

    def put_text(self, obj: str, filepath, encoding: str = 'utf-8') -> None:
        self.put(obj.encode(encoding), filepath)

    def remove(self, filepath) -> None:
        given = input_at(str(filepath))
        if given is not None:
            from mmengine.logging import print_log
            print_log(f'kept {filepath}: it is an input of this run '
                      f'({given})', logger='current', level=logging.WARNING)
            return
        super().remove(filepath)


def register_file_backend() -> None:
    """Make :class:`GuardedLocalBackend` mmengine's backend of local
    paths."""
    register_backend('local', GuardedLocalBackend, force=True, prefixes='')


def save_checkpoint_atomic(checkpoint: dict, path: str) -> None:
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)
