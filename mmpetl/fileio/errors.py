# Copyright (c) mmpetl contributors. All rights reserved.
"""The errors of file input and output, each an
:class:`~mmpetl.utils.errors.InputError` (the tools print its first line and
exit with status 2)."""
from ..utils.errors import InputError


class CheckpointError(InputError, ValueError):
    """A checkpoint or config given to a tool is unusable; the message says
    which file and why."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint needs a type outside the allow-list to load
    (:data:`mmpetl.fileio.safe_load.SAFE_GLOBALS`), or a config read from a
    checkpoint names a type outside the known registries."""


class OutputError(CheckpointError):
    """An output cannot be written: it is an input of the run, it exists
    and ``--force`` is not given, its folder is missing or not writable, or
    the write failed (full disk, file size limit, removed folder). A
    :class:`CheckpointError`, as output problems were before they had their
    own class."""


def first_line(error: BaseException) -> str:
    """``Type: first line of the message``, for one-line error reports."""
    message = str(error).strip().split('\n')[0]
    return f'{type(error).__name__}: {message}'


__all__ = ['CheckpointError', 'UnsafeCheckpointError', 'OutputError',
           'first_line']
