# Copyright (c) mmpetl contributors. All rights reserved.
"""The ``e2e`` marker: tests that start a subprocess (a tool, a suite, a
distributed run, a fresh interpreter), found by reading their code.

A test is ``e2e`` when its function, or a fixture it uses (its whole fixture
closure), calls ``subprocess``/``runpy`` or a function of its module or of
``tests.support`` that does, however deep. ``pytest -m 'not e2e'`` runs the
in-process tests only.
"""
import functools
import inspect
import re
import sys
from typing import Callable, FrozenSet

_STARTS = re.compile(r'\b(?:subprocess|runpy)\.\w+\(')


@functools.lru_cache(maxsize=None)
def spawning_names(module_name: str) -> FrozenSet[str]:
    """Names of the module-level functions of ``module_name`` (and of the
    ``tests.support`` modules) that start a subprocess."""
    sources = {}
    names = [module_name] + [m for m in sys.modules
                             if m.startswith('tests.support.')]
    for name in names:
        module = sys.modules.get(name)
        for attr, value in vars(module or object).items():
            if inspect.isfunction(value):
                try:
                    sources[attr] = inspect.getsource(value)
                except (OSError, TypeError):
                    continue
    spawning = {n for n, src in sources.items() if _STARTS.search(src)}
    grown = True
    while grown:  # functions calling those, to a fixed point
        calls = _calls(spawning)
        more = {n for n, src in sources.items()
                if n not in spawning and calls.search(src)}
        spawning |= more
        grown = bool(more)
    return frozenset(spawning)


def _calls(names) -> 're.Pattern':
    alternatives = '|'.join(map(re.escape, sorted(names))) or r'(?!x)x'
    return re.compile(rf'(?<![\w.])(?:{alternatives})\(')


def starts_subprocess(function: Callable, module_name: str) -> bool:
    """Whether ``function``'s code starts a subprocess (see the module
    docstring)."""
    try:
        source = inspect.getsource(function)
    except (OSError, TypeError):
        return False
    return bool(_STARTS.search(source)
                or _calls(spawning_names(module_name)).search(source))


def mark_e2e(items) -> None:
    """Add the ``e2e`` marker to the collected tests that start a
    subprocess."""
    import pytest
    for item in items:
        function = getattr(item, 'function', None)
        if function is None:
            continue
        fixtures = [
            fixturedef.func
            for defs in item._fixtureinfo.name2fixturedefs.values()
            for fixturedef in defs
        ]
        if any(starts_subprocess(f, f.__module__)
               for f in [function, *fixtures]):
            item.add_marker(pytest.mark.e2e)
