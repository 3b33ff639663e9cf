# Copyright (c) mmpetl contributors. All rights reserved.
"""The output checks and atomic writes of the deployment tools.

The deployment tools run merged checkpoints without mmpetl (they show that
the merged model is the stock one), so they cannot use
``mmpetl.fileio.checkpoint_io``; this module keeps the same rules for them: an
output never replaces an input (compared with ``os.path.samefile``, so
links and linked folders are seen through), an existing output is replaced
only with ``--force``, its folder must exist, and the file appears complete
or not at all, with the usual mode (0666 less the umask).
"""
import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from typing import Iterable, Iterator


def output_problem(out: str, force: bool, inputs: Iterable[str]) -> str:
    """Why ``out`` cannot be written (an empty string if it can)."""
    for given in inputs:
        if osp.exists(given) and osp.exists(out) and osp.samefile(given, out):
            return f'output {out} is an input ({given}); choose another path'
    if osp.isdir(out):
        return f'output {out} is a directory'
    if osp.exists(out) and not force:
        return f'output {out} exists; pass --force to replace it'
    if not osp.isdir(osp.dirname(osp.abspath(out))):
        return f'output folder of {out} does not exist'
    return ''


@contextmanager
def atomic_output(out: str) -> Iterator[str]:
    """Yield a temporary path beside ``out``, renamed to ``out`` on success
    (mode 0666 less the umask) and removed on failure."""
    stem, ext = osp.splitext(osp.basename(out))
    fd, tmp = tempfile.mkstemp(
        dir=osp.dirname(osp.abspath(out)), prefix=f'.{stem}.',
        suffix=f'.tmp{ext}')
    os.close(fd)
    try:
        yield tmp
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, out)
    finally:
        if osp.exists(tmp):
            os.remove(tmp)
