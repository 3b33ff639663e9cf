# Copyright (c) mmpetl contributors. All rights reserved.
"""The examples of docs/en/api_usage.md run as written: each ```python
block in page order, in one namespace (as a reader pastes them into one
session), in a fresh directory; the ```text block right after an example is
what it must print."""
import json
import os.path as osp
import re
import subprocess
import sys

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


#: Runs the examples given as JSON on stdin in one namespace, in a fresh
#: interpreter (a reader's session: no registry scope or logger left by
#: another test); prints, as JSON, each example's output, or its error.
DRIVER = """
import contextlib, io, json, sys, traceback
namespace = {'__name__': '__api_usage__'}
outputs = []
for number, code in enumerate(json.load(sys.stdin), 1):
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            exec(compile(code, f'example {number}', 'exec'), namespace)
    except Exception:
        outputs.append(dict(error=traceback.format_exc()))
        break
    outputs.append(dict(out=out.getvalue()))
print(json.dumps(outputs))
"""


def test_api_usage_examples_run_and_print_what_the_page_shows(tmp_path):
    examples = page_examples(open(PAGE, encoding='utf-8').read())
    result = subprocess.run(
        [sys.executable, '-c', DRIVER],
        input=json.dumps([code for code, _ in examples]), cwd=tmp_path,
        capture_output=True, text=True, check=True)
    outputs = json.loads(result.stdout.splitlines()[-1])
    for number, ((code, expected), output) in enumerate(
            zip(examples, outputs), 1):
        assert 'error' not in output, (
            f'example {number} raised:\n{code}\n{output.get("error")}')
        if expected is not None:
            assert output['out'] == expected, f'example {number}:\n{code}'
    assert len(outputs) == len(examples)
