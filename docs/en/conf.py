"""Sphinx configuration of the mmpetl documentation (MyST Markdown).

Build: ``make docs`` (warnings are errors, references are checked with
``-n``; ``tools/check_doc_links.py`` checks every relative Markdown link).
"""
import importlib
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
sys.path.insert(0, ROOT)

import mmpetl  # noqa: E402
from sphinx.ext import napoleon  # noqa: E402

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
    # MathJax served from the built site (no CDN: formulas render offline).
    'sphinx-mathjax-offline',
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
# Each object is documented once, in the module that defines it: a
# package's ``__all__`` re-exports are not documented again.
autodoc_default_options = {
    'members': True,
    'show-inheritance': True,
    'ignore-module-all': True,
}
# A method without its own docstring is documented where it is defined (the
# toolboxes' base classes), not again here.
autodoc_inherit_docstrings = False

# Nitpicky mode (-n) checks every cross-reference. Types of the libraries
# mmpetl builds on are documented elsewhere (no intersphinx: the build is
# offline), so references into them are not resolved here; references into
# mmpetl itself must resolve.
nitpick_ignore_regex = [
    ('py:.*', r'(torch|mmengine|mmcv|mmpretrain|mmseg|mmdet|mmaction|numpy|np'
     r'|PIL|onnx|onnxruntime|matplotlib)(\..*)?'),
    ('py:.*', r'(typing|collections|pathlib|os|argparse|logging|re|io'
     r'|contextlib|dataclasses|enum|abc|types|warnings)\..*'),
    # Short names of those libraries' types, as docstrings write them.
    ('py:class', r'(optional|callable|Tensor|Module|Path|nn\..*|Runner'
     r'|Config|ConfigDict|OptimWrapper|Optimizer|BaseDataset|Dropout'
     r'|BatchNorm|LayerNorm|Linear|Parameter|DataLoader|Hook|BaseModel)'),
]


def mro_members(node, suffix):
    """``module.Class.suffix`` for the reference's class and its bases."""
    obj = importlib.import_module(node['py:module'])
    for part in node['py:class'].split('.'):
        obj = getattr(obj, part)
    return [f'{base.__module__}.{base.__qualname__}.{suffix}'
            for base in obj.__mro__]


def documented_name(objects, node, target):
    """The documented mmpetl object ``target`` names, or None.

    The longest trailing part of ``target`` that names exactly one
    documented mmpetl object decides; where several match, a member of the
    reference's class (or of one of its bases) wins.
    """
    parts = target.lstrip('.~').split('.')
    for start in range(len(parts)):
        suffix = '.'.join(parts[start:])
        found = [name for name in objects if name.startswith('mmpetl.')
                 and (name == suffix or name.endswith('.' + suffix))]
        if len(found) > 1 and node.get('py:class'):
            found = [name for name in mro_members(node, suffix)
                     if name in objects][:1] or found
        if len(found) == 1:
            return found[0]
        if found:
            return None
    return None


def has_field(class_name, field):
    """Whether the class ``class_name`` has the attribute or field."""
    module, _, name = class_name.rpartition('.')
    cls = getattr(importlib.import_module(module), name)
    return hasattr(cls, field) or field in getattr(
        cls, '__annotations__', {})


def resolve_mmpetl_reference(app, env, node, contnode):
    """Resolve a reference into mmpetl by the documented object it names.

    Docstrings name mmpetl objects as their users import them
    (``mmpetl.models.AdapterBackbone``) or as siblings of the current module
    (``FrozenBackbone``); the API reference documents each object where it
    is defined (``mmpetl.models.adapter_backbone.AdapterBackbone``). A
    field of a documented class that has no entry of its own
    (``StepCost.seconds``) links to its class, if the class has it. Anything
    else (no match, several) leaves the warning.
    """
    if node.get('refdomain') != 'py':
        return None
    from sphinx.util.nodes import make_refnode
    objects = env.get_domain('py').objects
    target = node['reftarget']
    name = documented_name(objects, node, target)
    if name is None and node.get('reftype') == 'attr' and '.' in target:
        owner_target, _, field = target.rpartition('.')
        owner = documented_name(objects, node, owner_target)
        if owner and objects[owner].objtype == 'class' and has_field(
                owner, field):
            name = owner
    if name is None:
        return None
    entry = objects[name]
    return make_refnode(app.builder, node['refdoc'], entry.docname,
                        entry.node_id, contnode, name)


def napoleon_except_constants(app, what, name, obj, options, lines):
    """Napoleon's docstring processing, except for constants and attributes.

    Napoleon reads the first line of an attribute's or a module constant's
    docstring as ``type: description``; mmpetl's (``#:`` comments) are
    prose (``Images per split of the real VTAB-1k: ...``), left as written.
    """
    if what not in ('data', 'attribute'):
        napoleon._process_docstring(app, what, name, obj, options, lines)


def setup(app):
    for listener in list(app.events.listeners['autodoc-process-docstring']):
        if listener.handler is napoleon._process_docstring:
            app.disconnect(listener.id)
    app.connect('autodoc-process-docstring', napoleon_except_constants)
    app.connect('missing-reference', resolve_mmpetl_reference)

html_theme = 'furo'
html_title = f'mmpetl {release}'
# Wide tables scroll sideways; tables in a `sortable` container sort by a
# clicked column.
html_static_path = ['_static']
html_css_files = ['mmpetl.css']
html_js_files = ['sortable.js']
