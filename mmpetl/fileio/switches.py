# Copyright (c) mmpetl contributors. All rights reserved.
"""mmpetl's environment switches, parsed strictly.

A switch is on for ``1``, ``true``, ``yes``, ``on`` and off for ``0``,
``false``, ``no``, ``off`` or the empty string (any case); any other value
is an error, never a silent "yes".
"""
import os

from .errors import CheckpointError

#: Set to 1 to unpickle checkpoints without the allow-list (trusted files
#: only: a malicious file can run code when loaded this way).
TRUSTED_CHECKPOINTS_ENV = 'MMPETL_TRUSTED_CHECKPOINTS'
#: Set to 1 to load adapter checkpoints onto another backbone anyway
#: (:mod:`mmpetl.fileio.fingerprint`).
IGNORE_FINGERPRINT_ENV = 'MMPETL_IGNORE_FINGERPRINT'
#: The environment switches of mmpetl (see :func:`env_flag`).
ENV_FLAGS = (TRUSTED_CHECKPOINTS_ENV, IGNORE_FINGERPRINT_ENV)

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


__all__ = ['TRUSTED_CHECKPOINTS_ENV', 'IGNORE_FINGERPRINT_ENV', 'ENV_FLAGS',
           'env_flag', 'check_env_flags', 'trusted_checkpoints']
