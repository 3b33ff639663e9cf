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

Writes are atomic (a temporary file in the destination folder, then
``os.replace``, mode 0644 under the usual umask), never touch the inputs,
and refuse to replace an existing file unless asked.
"""
import importlib
import inspect
import os
import os.path as osp
import pickle
import re
import tempfile
from collections import OrderedDict
from contextlib import contextmanager
from functools import lru_cache
from typing import Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch import nn

#: Set to 1 to unpickle checkpoints without the allow-list (trusted files
#: only: a malicious file can run code when loaded this way).
TRUSTED_CHECKPOINTS_ENV = 'MMPETL_TRUSTED_CHECKPOINTS'

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


class CheckpointError(ValueError):
    """A checkpoint or config given to a tool is unusable; the message says
    which file and why."""


def first_line(error: BaseException) -> str:
    """``Type: first line of the message``, for one-line error reports."""
    message = str(error).strip().split('\n')[0]
    return f'{type(error).__name__}: {message}'


def load_config_file(path: str):
    """``Config.fromfile`` with a :class:`CheckpointError` on failure."""
    from mmengine.config import Config
    if not osp.isfile(path):
        raise CheckpointError(f'config {path} does not exist')
    try:
        return Config.fromfile(path)
    except Exception as e:
        raise CheckpointError(f'cannot read config {path} ({first_line(e)})')


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint needs a type outside :data:`SAFE_GLOBALS` to load."""


def env_flag(name: str) -> bool:
    """Whether the environment variable ``name`` is set to a true value."""
    value = os.environ.get(name, '').strip().lower()
    return value not in ('', '0', 'false', 'no')


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

    Registered as mmengine's local-file loader by :mod:`mmpetl.compat`, so
    the runner, ``init_cfg`` Pretrained and ``load_checkpoint`` use it.

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
    if trusted_checkpoints():
        return torch.load(
            filename, map_location=map_location, weights_only=False)
    try:
        with torch.serialization.safe_globals(list(safe_globals())):
            return torch.load(
                filename, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise _unpickling_error(filename, e) from None


def check_checkpoint_path(path: str) -> None:
    """Raise :class:`CheckpointError` unless ``path`` is a file."""
    if osp.isdir(path):
        raise CheckpointError(f'checkpoint {path} is a directory, not a '
                              'checkpoint file')
    if not osp.isfile(path):
        raise CheckpointError(f'checkpoint {path} does not exist')


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


def load_matching_state_dict(model: nn.Module, state_dict: Dict,
                             source: str) -> None:
    """Load ``state_dict`` strictly (frozen backbone weights may be absent
    from adapter checkpoints), raising :class:`CheckpointError` on any
    mismatch."""
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


def non_finite_entries(state_dict: Dict) -> List[Tuple[str, int]]:
    """``(key, count)`` of every floating tensor holding NaN or Inf."""
    found = []
    for key, value in state_dict.items():
        if isinstance(value, torch.Tensor) and (value.is_floating_point()
                                                or value.is_complex()):
            bad = int((~torch.isfinite(value)).sum())
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


def config_files(path: str) -> List[str]:
    """``path`` and all its ``_base_`` files, recursively (``pkg::`` bases
    resolved to the installed files)."""
    from mmengine.config import Config
    files, todo = [], [path]
    while todo:
        current = osp.abspath(todo.pop())
        if current in files or not osp.isfile(current):
            continue
        files.append(current)
        try:
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


def check_output_path(path: str,
                      force: bool,
                      *inputs: str,
                      make_folder: bool = False) -> None:
    """Refuse to write over an input (whatever ``force`` says), over an
    existing file unless ``force``, or into a folder that is missing (with
    ``make_folder``: that cannot be made) or not writable."""
    for given in inputs:
        if given and osp.exists(given) and osp.exists(path) and \
                osp.samefile(given, path):
            raise CheckpointError(f'output {path} is an input ({given}); '
                                  'choose another output path')
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
            if osp.abspath(other) == osp.abspath(path):
                raise CheckpointError(f'{path} is given as two outputs')


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces
    ``path`` in one rename (mode 0666 less the umask, as ``open`` gives),
    on failure it is removed."""
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


def save_checkpoint_atomic(checkpoint: dict, path: str) -> None:
    with atomic_output(path) as tmp:
        torch.save(checkpoint, tmp)
