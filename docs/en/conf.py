"""Sphinx configuration of the mmpetl documentation (MyST Markdown).

Build: ``make docs`` (warnings are errors, references are checked with
``-n``; ``tools/check_doc_links.py`` checks every relative Markdown link).
"""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, ROOT)

import mmpetl  # noqa: E402

project = 'mmpetl'
copyright = 'mmpetl contributors'
author = 'mmpetl contributors'
version = mmpetl.__version__
release = mmpetl.__version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',
    'sphinx.ext.mathjax',
]
source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build']

# MyST: `$...$` maths, ```{directive}``` blocks, anchors for `page.md#heading`
# links down to level-4 headings; a link to a page or heading that does not
# exist is a warning (an error with -W).
myst_enable_extensions = ['dollarmath', 'colon_fence', 'deflist']
myst_heading_anchors = 4
myst_all_links_external = False

# Docstrings are Google style (Args / Returns / Shapes) with reST inside.
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = 'bysource'
autodoc_typehints = 'description'
autodoc_default_options = {'members': True, 'show-inheritance': True}

# Nitpicky mode (-n) checks every cross-reference. Types of the libraries
# mmpetl builds on are documented elsewhere (no intersphinx: the build is
# offline), so references into them are not resolved here; references into
# mmpetl itself must resolve.
nitpick_ignore_regex = [
    ('py:.*', r'(torch|mmengine|mmcv|mmpretrain|mmseg|mmdet|mmaction|numpy|np'
     r'|PIL|onnx|onnxruntime|matplotlib)(\..*)?'),
    ('py:.*', r'(typing|collections|pathlib|os|argparse|logging|re|io'
     r'|contextlib|dataclasses|enum|abc|types|warnings)\..*'),
    ('py:class', r'(optional|default .*|callable|Tensor|Module|Path'
     r'|nn\..*|T)'),
]

html_theme = 'furo'
html_title = f'mmpetl {release}'
html_static_path = []
