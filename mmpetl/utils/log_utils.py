# Copyright (c) mmpetl contributors. All rights reserved.
"""Where the logs of tools that build models outside a Runner go.

A Runner logs through an :class:`~mmengine.logging.MMLogger` that has a
file handler; ``BaseModule.init_weights`` then writes its per-parameter
initialisation records (one per parameter: ``PretrainedInit`` ...) to that
file only. Outside a Runner the current MMLogger has no file handler and the
records go to the console: 225 lines for a 4-layer ViT. :func:`log_to_file`
gives such tools the Runner's arrangement.
"""
import itertools
import logging
import os
import os.path as osp
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


def temporary_log_file(prefix: str) -> str:
    """A new, empty ``<prefix>*.log`` in the temporary directory."""
    fd, path = tempfile.mkstemp(prefix=prefix, suffix='.log')
    os.close(fd)
    return path
