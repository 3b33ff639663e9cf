# Copyright (c) mmpetl contributors. All rights reserved.
"""Loading checkpoints without running code.

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
resolves, chosen when a checkpoint is loaded (:func:`register_checkpoint_loaders`),
so a scheme that another package registers later is covered too:
``http(s)://`` URLs are downloaded into torch.hub's cache as mmengine does,
then unpickled as a local file is; ``torchvision://``, ``modelzoo://``,
``open-mmlab://``, ``openmmlab://`` and ``mmcls://`` names go through
mmengine's tables to such a URL (or a local file); ``s3://`` and
``petrel://`` are read into memory and unpickled the same way. A scheme
with no safe loader here (``pavi://``, or one another package registered,
at any time) is refused, unless ``MMPETL_TRUSTED_CHECKPOINTS`` is on.

The config texts a loaded checkpoint carries (``meta['cfg']``,
``message_hub['runtime_info']['cfg']``, any ``cfg`` string) are recorded
(:func:`carried_configs`), so that reading one of them as a config reads it
as data (:func:`mmpetl.fileio.configs.read_checkpoint_configs_as_data`).
"""
import importlib
import inspect
import io
import os.path as osp
import pickle
import re
from functools import lru_cache
from typing import Any, Callable, Dict, Iterator, List, Tuple

import torch

from .errors import CheckpointError, UnsafeCheckpointError, first_line
from .switches import TRUSTED_CHECKPOINTS_ENV, trusted_checkpoints

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
        return _record_configs(load(False), source)
    try:
        with torch.serialization.safe_globals(list(safe_globals())):
            return _record_configs(load(True), source)
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
    loading policy, when a checkpoint is loaded: the loader of a scheme is
    the one of :data:`SAFE_SCHEME_LOADERS` for it, or :func:`refusing_loader`
    around whatever loader the scheme has, whenever it was registered (a
    package that registers a scheme after ``import mmpetl``, or replaces a
    safe one, does not get full unpickling)."""
    from mmengine.runner.checkpoint import CheckpointLoader
    for prefix, loader in SAFE_SCHEME_LOADERS.items():
        CheckpointLoader.register_scheme(prefix, loader, force=True)
    if getattr(CheckpointLoader._get_checkpoint_loader, 'mmpetl_policy',
               False):
        return

    def _get_checkpoint_loader(cls, path):
        # As mmengine's: the longest matching prefix first (sorted).
        for prefix, loader in cls._schemes.items():
            if re.match(prefix, path) is not None:
                if prefix in SAFE_SCHEME_LOADERS:
                    return SAFE_SCHEME_LOADERS[prefix]
                return refusing_loader(prefix, loader)
        return None

    _get_checkpoint_loader.mmpetl_policy = True
    CheckpointLoader._get_checkpoint_loader = classmethod(
        _get_checkpoint_loader)


#: Config texts carried by the checkpoints loaded last, and their files
#: (:func:`carried_configs`); a few, as readers use them at once.
_CARRIED_CONFIGS: Dict[str, str] = {}
_CARRIED_LIMIT = 16


#: Keys under which checkpoints carry config texts: ``cfg`` (mmengine's
#: ``meta`` and message hub, read by the inferencers), ``config`` (mmcv's
#: ``meta``, read by ``Runner.resume``).
CONFIG_KEYS = ('cfg', 'config')


def _config_texts(obj: Any, depth: int = 0) -> Iterator[str]:
    """Every config string (:data:`CONFIG_KEYS`) in the dicts of ``obj``
    outside the state dict."""
    if depth > 4 or not isinstance(obj, dict):
        return
    for key, value in obj.items():
        if key in CONFIG_KEYS and isinstance(value, str):
            yield value
        elif isinstance(value, dict) and key != 'state_dict':
            yield from _config_texts(value, depth + 1)


def _record_configs(checkpoint: Any, source: str) -> Any:
    for text in _config_texts(checkpoint):
        _CARRIED_CONFIGS.pop(text, None)
        _CARRIED_CONFIGS[text] = source
        while len(_CARRIED_CONFIGS) > _CARRIED_LIMIT:
            _CARRIED_CONFIGS.pop(next(iter(_CARRIED_CONFIGS)))
    return checkpoint


def carried_configs() -> Dict[str, str]:
    """``{config text: checkpoint}`` for the config texts of the checkpoints
    loaded last (``meta['cfg']``, ``message_hub['runtime_info']['cfg']``,
    ``meta['config']``, any such string in their metadata)."""
    return dict(_CARRIED_CONFIGS)


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




__all__ = [
    'SAFE_GLOBALS', 'SAFE_SCHEME_LOADERS', 'safe_globals', 'class_function',
    'load_local_checkpoint', 'load_url_checkpoint', 'refusing_loader',
    'register_checkpoint_loaders', 'carried_configs',
    'check_checkpoint_path', 'load_checkpoint_dict', 'load_checkpoint_file'
]
