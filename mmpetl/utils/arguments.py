# Copyright (c) mmpetl contributors. All rights reserved.
"""The validated argument layer of every tool.

Each tool declares its flags once, on a :class:`ToolParser`, with the
types below: a value that makes no sense (``--rounds 0``, ``--tolerance
nan``, ``--size -32``, ``--device cuda`` without a GPU, a missing file, a
JSON number that is not finite) is refused while the command line is
parsed, before any work, in one line::

    error: argument --rounds: 0 is not a whole number >= 1

with exit status 2, as every other input error of the tools. The
types raise ``argparse.ArgumentTypeError``; used outside argparse,
:func:`check` turns it into an :class:`~mmpetl.utils.errors.InputError`.

This module uses only the standard library (torch for devices), so that
the deployment tools, which never import mmpetl, use it too.
"""
import argparse
import json
import math
import os.path as osp
import sys
from typing import Any, Callable, NoReturn

from .errors import InputError

ArgumentTypeError = argparse.ArgumentTypeError


class ToolParser(argparse.ArgumentParser):
    """``argparse.ArgumentParser`` whose errors are one line,
    ``error: <what>``, and exit status 2 (argparse prints the usage
    first)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f'error: {message}\n')
        sys.exit(2)


def _number(text: str, kind: Callable, what: str):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        raise ArgumentTypeError(f'{text!r} is not {what}')
    if isinstance(value, float) and not math.isfinite(value):
        raise ArgumentTypeError(f'{text!r} is not {what}')
    return value


def positive_int(text: str) -> int:
    """A whole number >= 1 (counts: rounds, tasks, batch sizes, sizes,
    threads, seeds)."""
    value = _number(text, int, 'a whole number >= 1')
    if value < 1:
        raise ArgumentTypeError(f'{value} is not a whole number >= 1')
    return value


def non_negative_int(text: str) -> int:
    """A whole number >= 0 (warm-up rounds, ``--profile``)."""
    value = _number(text, int, 'a whole number >= 0')
    if value < 0:
        raise ArgumentTypeError(f'{value} is not a whole number >= 0')
    return value


def positive_float(text: str) -> float:
    """A finite number > 0 (tolerances, ratios, times)."""
    value = _number(text, float, 'a finite number > 0')
    if not value > 0:
        raise ArgumentTypeError(f'{text!r} is not a finite number > 0')
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a wait time)."""
    value = _number(text, float, 'a finite number >= 0')
    if value < 0:
        raise ArgumentTypeError(f'{text!r} is not a finite number >= 0')
    return value


def device(text: str) -> str:
    """A torch device that this machine has: ``cpu``, ``cuda`` /
    ``cuda:N`` only with that GPU, ``mps`` / ``xpu`` / ``npu`` only where
    available."""
    import torch
    try:
        parsed = torch.device(text)
    except (RuntimeError, ValueError):
        raise ArgumentTypeError(
            f'{text!r} is not a device (e.g. cpu, cuda, cuda:1)')
    if parsed.type == 'cpu':
        return text
    backend = getattr(torch, parsed.type, None)
    available = getattr(backend, 'is_available', lambda: False)()
    if not available:
        raise ArgumentTypeError(f'{text}: no {parsed.type} device is '
                                'available here; use cpu')
    count = getattr(backend, 'device_count', lambda: 1)()
    if parsed.index is not None and parsed.index >= count:
        raise ArgumentTypeError(f'{text}: this machine has {count} '
                                f'{parsed.type} device(s)')
    return text


def existing_file(text: str) -> str:
    """A file that exists."""
    if not osp.isfile(text):
        raise ArgumentTypeError(
            f'{text} is a directory, not a file' if osp.isdir(text) else
            f'{text} does not exist')
    return text


def existing_path(text: str) -> str:
    """A file or folder that exists (an input image or frame folder)."""
    if not osp.exists(text):
        raise ArgumentTypeError(f'{text} does not exist')
    return text


def folder_or_new(text: str) -> str:
    """A folder, or a path where one can be made (not a file)."""
    if osp.exists(text) and not osp.isdir(text):
        raise ArgumentTypeError(f'{text} is a file, not a folder')
    return text


def _refuse_constant(name: str) -> NoReturn:
    raise ValueError(f'{name} is not a finite number')


def _finite_json(text: str) -> Any:
    """``json.loads(text)``; ``ValueError`` for a number that is not
    finite (``NaN``, ``Infinity``, ``1e999``)."""
    value = json.loads(text, parse_constant=_refuse_constant)
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, float) and not math.isfinite(item):
            raise ValueError(f'{item} is not a finite number')
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return value


def finite_json(text: str) -> Any:
    """JSON whose numbers are all finite."""
    try:
        return _finite_json(text)
    except ValueError as e:
        raise ArgumentTypeError(f'{text!r} is not JSON with finite numbers '
                                f'({e})')


def finite_json_file(path: str) -> Any:
    """The contents of a JSON file whose numbers are all finite."""
    existing_file(path)
    try:
        with open(path, encoding='utf-8') as f:
            return _finite_json(f.read())
    except (OSError, ValueError) as e:  # UnicodeDecodeError included
        raise ArgumentTypeError(f'{path} is not JSON with finite numbers '
                                f'({str(e).splitlines()[0]})')


def arch(text: str):
    """A backbone's arch: a name (checked against the backbone's
    ``arch_zoo`` by the tool), or a JSON object of its fields with finite
    numbers."""
    if not text.lstrip().startswith('{'):
        return text
    value = finite_json(text)
    if not isinstance(value, dict):
        raise ArgumentTypeError(f'{text!r} is not a JSON object')
    return value


def check(parse: Callable, text: Any, flag: str):
    """``parse(text)`` outside argparse: a refusal is an
    :class:`~mmpetl.utils.errors.InputError` naming ``flag``."""
    try:
        return parse(text)
    except ArgumentTypeError as e:
        raise InputError(f'{flag}: {e}') from None


__all__ = [
    'ToolParser', 'ArgumentTypeError', 'positive_int', 'non_negative_int',
    'positive_float', 'non_negative_float', 'device', 'existing_file', 'existing_path',
    'folder_or_new', 'finite_json', 'finite_json_file', 'arch', 'check'
]
