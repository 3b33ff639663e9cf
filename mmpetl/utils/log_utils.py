# Copyright (c) mmpetl contributors. All rights reserved.
"""Where the logs of tools that build models outside a Runner go.

A Runner logs through an :class:`~mmengine.logging.MMLogger` that has a
file handler; ``BaseModule.init_weights`` then writes its per-parameter
initialisation records (one per parameter: ``PretrainedInit`` ...) to that
file only. Outside a Runner the current MMLogger has no file handler and the
records go to the console: 225 lines for a 4-layer ViT. :func:`log_to_file`
gives such tools the Runner's arrangement. A wrapper built in Python, with no
log file at all, logs those records at DEBUG (:func:`init_records_at_debug`).
"""
import io
import itertools
import logging
import os
import os.path as osp
import re
import sys
import tempfile
from contextlib import ExitStack, contextmanager, redirect_stdout
from typing import Iterator, Union

from mmengine.logging import MMLogger

_instances = itertools.count()


@contextmanager
def log_to_file(log_file: str,
                console_level: Union[int, str] = logging.WARNING
                ) -> Iterator[MMLogger]:
    """Make a new MMLogger, writing INFO and above to ``log_file``, the
    current one while the context is active.

    Everything mmengine and the toolboxes log through the current logger
    (``print_log(..., logger='current')``, the per-parameter init records of
    ``init_weights``) goes to ``log_file``; the console shows only records of
    ``console_level`` and above (warnings, e.g. missing keys of a
    pre-trained checkpoint), and what mmengine writes with ``print``
    (standard output) goes to ``log_file`` too. The previous current logger
    is restored after.

    Args:
        log_file (str): The log file (replaced); its folder is created.
        console_level (int | str): Lowest level shown on the console.
            Defaults to WARNING.
    """
    folder = osp.dirname(osp.abspath(log_file))
    os.makedirs(folder, exist_ok=True)
    name = f'mmpetl-log-{os.getpid()}-{next(_instances)}'
    logger = MMLogger.get_instance(
        name, logger_name='mmengine', log_file=log_file, log_level='INFO')
    files = [h for h in logger.handlers if isinstance(h, logging.FileHandler)]
    for handler in logger.handlers:
        if handler not in files:
            handler.setLevel(console_level)
    try:
        with ExitStack() as stack:
            if files:
                # What mmengine print()s (e.g. "Loads checkpoint by ...").
                stack.enter_context(redirect_stdout(files[0].stream))
            yield logger
    finally:
        for handler in logger.handlers:
            handler.close()
        # MMLogger's current instance is the most recently created one.
        MMLogger._instance_dict.pop(name, None)


@contextmanager
def init_records_at_debug() -> Iterator[None]:
    """Log the INFO records of the current MMLogger at DEBUG while the
    context is active, unless that logger writes to a file.

    ``BaseModule.init_weights`` logs one INFO record per parameter (about
    150 for a ViT-B), a pre-trained file's loading two more, and a wrapper
    the sites it adapted; inside a Runner or :func:`log_to_file` they go to
    the log file (unchanged here), but a wrapper built in Python would print
    them all. Demoted to DEBUG,
    they show only where DEBUG is enabled (``MMLogger.get_current_instance()
    .setLevel('DEBUG')`` and its handlers); warnings and errors (missing
    keys of a pre-trained file) show as before.
    """
    logger = MMLogger.get_current_instance()
    if any(isinstance(h, logging.FileHandler) for h in logger.handlers):
        yield
        return

    def demote(record: logging.LogRecord) -> bool:
        if record.levelno == logging.INFO:
            record.levelno, record.levelname = logging.DEBUG, 'DEBUG'
        return True

    logger.addFilter(demote)
    try:
        # What mmengine print()s ("Loads checkpoint by ..."): DEBUG too.
        with redirect_stdout(_DebugLines(logger)):
            yield
    finally:
        logger.removeFilter(demote)


class _DebugLines(io.TextIOBase):
    """A text stream that logs each line written to it at DEBUG."""

    def __init__(self, logger: logging.Logger):
        self.logger = logger

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.logger.debug(line)
        return len(text)


#: A console log line of a warning or worse (colour codes removed), and
#: mmengine's notices of its own deprecated internals (FileClient, ...),
#: which its hooks trigger in every run and a user cannot act on.
_WARNING_LINE = re.compile(r' - (WARNING|ERROR|CRITICAL) - ')
_INTERNAL_NOTICE = re.compile(r'will be deprecated in future|is the alias of')
_COLOUR = re.compile(r'\x1b\[[0-9;]*m')


@contextmanager
def console_warnings_only() -> Iterator[None]:
    """Show on the console only the warnings and errors of what is written
    to standard output while the context is active.

    A Runner built inside logs to the console its environment, its whole
    config and every logged iteration (hundreds of lines per run of a
    suite); they stay in the Runner's own log file
    (``{work_dir}/{timestamp}/{timestamp}.log``), and its warnings and
    errors still show here (but mmengine's notices about its own
    deprecated internals).
    """
    with redirect_stdout(_WarningLines(sys.stdout)):
        yield


class _WarningLines(io.TextIOBase):
    """A text stream that passes on the lines of warnings and errors."""

    def __init__(self, stream):
        self.stream, self.partial = stream, ''

    def write(self, text: str) -> int:
        *lines, self.partial = (self.partial + text).split('\n')
        for line in map(_COLOUR.sub, itertools.repeat(''), lines):
            if _WARNING_LINE.search(line) and \
                    not _INTERNAL_NOTICE.search(line):
                self.stream.write(line + '\n')
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


def temporary_log_file(prefix: str) -> str:
    """A new, empty ``<prefix>*.log`` in the temporary directory."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix='.log')
    os.close(fd)
    return path
