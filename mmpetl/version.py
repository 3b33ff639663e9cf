# Copyright (c) mmpetl contributors. All rights reserved.
"""The version of mmpetl, in this one place: ``setup.py`` reads it and
``mmpetl.__version__`` is it."""

__version__ = '0.3.0'


def parse_version_info(version: str) -> tuple:
    """``'0.2.0'`` -> ``(0, 2, 0)``; a suffix stays a string part
    (``'0.3.0rc1'`` -> ``(0, 3, 0, 'rc1')``)."""
    parts = []
    for part in version.split('.'):
        digits = part[:len(part) - len(part.lstrip('0123456789'))]
        parts.append(int(digits))
        if part[len(digits):]:
            parts.append(part[len(digits):])
    return tuple(parts)


version_info = parse_version_info(__version__)
