# Copyright (c) mmpetl contributors. All rights reserved.
"""The examples of docs/en/api_usage.md run as written: each ```python
block in page order, in one namespace (as a reader pastes them into one
session), in a fresh directory; the ```text block right after an example is
what it must print."""
import contextlib
import io
import os.path as osp
import re

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
PAGE = osp.join(ROOT, 'docs', 'en', 'api_usage.md')
FENCE = re.compile(r'^```(\w+)\n(.*?)^```$', re.M | re.S)


def page_examples(text: str):
    """``[(code, expected output or None)]`` of the page's python blocks."""
    blocks = [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]
    return [(code, blocks[i + 1][1] if i + 1 < len(blocks)
             and blocks[i + 1][0] == 'text' else None)
            for i, (lang, code) in enumerate(blocks) if lang == 'python']


def test_page_examples_are_found():
    """The extraction is not vacuous: the page's examples, with outputs."""
    examples = page_examples(open(PAGE, encoding='utf-8').read())
    assert len(examples) >= 6
    assert sum(expected is not None for _, expected in examples) >= 5
    assert page_examples('```python\nx = 1\n```\n\n```text\n1\n```\n') == [
        ('x = 1\n', '1\n')]


def test_api_usage_examples_run_and_print_what_the_page_shows(
        tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {'__name__': '__api_usage__'}
    examples = page_examples(open(PAGE, encoding='utf-8').read())
    for number, (code, expected) in enumerate(examples, 1):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            try:
                exec(compile(code, f'{PAGE} example {number}', 'exec'),
                     namespace)
            except Exception as e:  # the example, with the error
                pytest.fail(f'example {number} raised {e!r}:\n{code}')
        if expected is not None:
            assert out.getvalue() == expected, f'example {number}:\n{code}'
