# Copyright (c) mmpetl contributors. All rights reserved.
"""The one output guard: every file mmpetl, its tools, hooks, benchmarks,
suites and logs write goes through it.

**The inputs of a run** (checkpoints, the config and every base, the
checkpoints and data it names, input images; see
:func:`mmpetl.fileio.configs.run_input_files`) are registered with
:func:`protected_inputs` by the tool before anything is written. An output
(:func:`check_output_path`) is then refused

* if it is an input: the same file (``os.path.samefile``, so links and
  linked folders are seen through) or an existing file inside an input
  folder (an image folder, a data root), whatever ``--force`` says;
* if it exists, unless ``force`` (``--force``, the same for every tool);
* if its folder is missing (``make_folder``: cannot be made) or not
  writable (tried, not read from permission bits), before any work.

**Writes are atomic** (:func:`atomic_output`): a temporary file in the
destination folder, flushed, then renamed over the final name with the
usual mode (0666 less the umask). A write that fails (a full disk, a file
size limit, the folder removed mid-run) is one :class:`OutputError` line
and leaves nothing under the final name; the runner's checkpoints take the
same path (:class:`GuardedLocalBackend`).

This module uses nothing of mmpetl but its errors, so that the deployment
tools, which never import mmpetl, use it too
(``tools/deployment/deploy_outputs.py``).
"""
import logging
import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from typing import Any, Iterable, Iterator, List, Optional

from mmengine.fileio import LocalBackend, register_backend

from .errors import OutputError, first_line

#: The inputs of the run in this process (:func:`protected_inputs`).
_PROTECTED_INPUTS: List[str] = []


@contextmanager
def protected_inputs(paths: Iterable[str]) -> Iterator[None]:
    """Within the context, no output may replace the files or lie in the
    folders ``paths`` (those that exist), the inputs of the run."""
    added = [osp.abspath(p) for p in paths if p and osp.exists(p)]
    _PROTECTED_INPUTS.extend(added)
    try:
        yield
    finally:
        for path in added:
            _PROTECTED_INPUTS.remove(path)


def _inside(path: str, folder: str) -> bool:
    real, root = osp.realpath(path), osp.realpath(folder)
    return real != root and osp.commonpath([real, root]) == root


def input_at(path: str, inputs: Iterable[str] = ()) -> Optional[str]:
    """The input (of ``inputs`` or the protected inputs) that the existing
    file ``path`` is or lies in, or ``None``."""
    if not osp.exists(path):
        return None
    for given in (*inputs, *_PROTECTED_INPUTS):
        if not given or not osp.exists(given):
            continue
        if osp.samefile(given, path) or (
                osp.isdir(given) and _inside(path, given)):
            return given
    return None


def check_not_input(path: str, inputs: Iterable[str] = ()) -> None:
    """Raise :class:`OutputError` if ``path`` is an input (see
    :func:`input_at`)."""
    given = input_at(path, inputs)
    if given is not None:
        raise OutputError(f'output {path} is an input ({given}); choose '
                          'another output path')


def check_output_path(path: str,
                      force: bool,
                      *inputs: str,
                      make_folder: bool = False) -> None:
    """Refuse to write over an input (whatever ``force`` says), over an
    existing file unless ``force``, or into a folder that is missing (with
    ``make_folder``: that cannot be made) or not writable."""
    check_not_input(path, inputs)
    if osp.isdir(path):
        raise OutputError(f'output {path} is a directory')
    if osp.exists(path) and not force:
        raise OutputError(f'output {path} exists; pass --force to replace '
                          'it')
    folder = osp.dirname(osp.abspath(path))
    if make_folder and not osp.exists(folder):
        try:
            # exist_ok: another rank of the same launch may make it now.
            os.makedirs(folder, exist_ok=True)
        except OSError as e:
            raise OutputError(f'cannot make output folder {folder} '
                              f'({first_line(e)})')
    if not osp.isdir(folder):
        raise OutputError(f'output folder {folder} does not exist')
    try:  # the only reliable test (root ignores permission bits)
        fd, probe = tempfile.mkstemp(prefix='.write-test.', dir=folder)
    except OSError as e:
        raise OutputError(f'output folder {folder} is not writable '
                          f'({first_line(e)})')
    os.close(fd)
    os.remove(probe)


def check_output_paths(outputs: Iterable[Optional[str]],
                       force: bool,
                       inputs: Iterable[str] = (),
                       make_folders: bool = False) -> None:
    """:func:`check_output_path` for each given output against every input
    and against each other."""
    outputs = [o for o in outputs if o]
    inputs = list(inputs)
    for i, path in enumerate(outputs):
        check_output_path(path, force, *inputs, make_folder=make_folders)
        for other in outputs[:i]:
            if osp.realpath(other) == osp.realpath(path):
                raise OutputError(f'{path} is given as two outputs')


def check_output_folder(folder: str, inputs: Iterable[str] = ()) -> None:
    """A folder that outputs go to (``--work-dir``, ``--show-dir``): not a
    file, not an input, made if missing, writable."""
    if osp.exists(folder) and not osp.isdir(folder):
        raise OutputError(f'output folder {folder} is a file')
    check_not_input(folder, inputs)
    check_output_path(osp.join(folder, '.mmpetl-probe'), True, *inputs,
                      make_folder=True)


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success it replaces
    ``path`` in one rename (mode 0666 less the umask, as ``open`` gives),
    on failure it is removed. An input of the run (see
    :func:`protected_inputs`) is never replaced: :class:`OutputError`
    before anything is written; so is a failure to make or rename the
    temporary file (e.g. the folder was removed)."""
    check_not_input(path)
    folder, name = osp.split(osp.abspath(path))
    stem, ext = osp.splitext(name)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f'.{stem}.', suffix=f'.tmp{ext}',
                                   dir=folder)
    except OSError as e:
        raise OutputError(f'cannot write {path} ({first_line(e)})')
    os.close(fd)
    try:
        yield tmp
        check_not_input(path)  # an input may have appeared meanwhile
        try:
            os.chmod(tmp, _file_mode())
            os.replace(tmp, path)
        except OSError as e:
            raise OutputError(f'cannot write {path} ({first_line(e)})')
    finally:
        if osp.exists(tmp):
            os.remove(tmp)


@contextmanager
def write_errors(path: str) -> Iterator[None]:
    """Turn a failed write into one :class:`OutputError` line naming
    ``path`` (``torch.save`` reports its write failures as
    ``RuntimeError``)."""
    try:
        yield
    except OutputError:
        raise
    except (OSError, RuntimeError) as e:
        raise OutputError(f'cannot write {path} ({first_line(e)})') from None


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` through :func:`atomic_output`, flushed to
    the disk before the rename (a crash leaves the old file or the new
    one, never a part)."""
    with atomic_output(path) as tmp, write_errors(path):
        with open(tmp, 'wb') as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())


def write_text(path: str, text: str) -> None:
    """:func:`write_bytes` of ``text`` in UTF-8."""
    write_bytes(path, text.encode('utf-8'))


def save_checkpoint(checkpoint: Any, path: str) -> None:
    """``torch.save(checkpoint)`` to ``path`` through
    :func:`atomic_output`."""
    import torch
    with atomic_output(path) as tmp, write_errors(path):
        torch.save(checkpoint, tmp)


def dump(obj: Any, path: str, file_format: Optional[str] = None) -> None:
    """``mmengine.dump(obj)`` to ``path`` (as ``file_format`` or by its
    extension) through :func:`atomic_output`."""
    import mmengine
    with atomic_output(path) as tmp, write_errors(path):
        mmengine.dump(obj, tmp, file_format=file_format or
                      osp.splitext(path)[1].lstrip('.') or None)


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
        write_bytes(str(filepath), obj)

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


__all__ = [
    'protected_inputs', 'input_at', 'check_not_input', 'check_output_path',
    'check_output_paths', 'check_output_folder', 'atomic_output',
    'write_errors', 'write_bytes', 'write_text', 'save_checkpoint', 'dump',
    'GuardedLocalBackend', 'register_file_backend'
]
