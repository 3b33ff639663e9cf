# Copyright (c) mmpetl contributors. All rights reserved.
"""The documentation builds with warnings as errors, and the Markdown of
README.md and docs/ links only to files and headings that exist inside the
repository and names no absolute path of a machine."""
import importlib.util
import os
import os.path as osp
import re
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
DOCS = osp.join(ROOT, 'docs', 'en')


def sphinx(src, out):
    """``make docs``'s Sphinx command on ``src``; returns the finished
    process (stdout and stderr together)."""
    return subprocess.run(
        [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-n', '-q',
         '-b', 'html', src, out],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, timeout=300)


def load_checker():
    spec = importlib.util.spec_from_file_location(
        'check_links', osp.join(ROOT, 'docs', 'check_links.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def built_docs(tmp_path_factory):
    """The documentation built once for this module's tests: ``(output
    folder, Sphinx's output)``."""
    out = tmp_path_factory.mktemp('docs') / 'html'
    done = sphinx(DOCS, str(out))
    assert done.returncode == 0, done.stdout[-5000:]
    return out, done.stdout


def test_docs_build_without_warnings(built_docs):
    out, stdout = built_docs
    assert 'WARNING' not in stdout, stdout[-5000:]
    # Every page of the layout is built, and the API reference holds the
    # docstrings (autodoc ran on the installed package, nothing mocked).
    for page in ('get_started', 'methods/repadapter', 'methods/e3va',
                 'backbones', 'tasks/classification', 'tasks/video',
                 'tasks/dense', 'tools', 'trust', 'deployment',
                 'benchmarks/index', 'reproducing', 'faq', 'changelog',
                 'which_method', 'own_data', 'api/index'):
        assert (out / f'{page}.html').is_file(), page
    # One page per module, each holding that module's docstrings.
    for module, name in (
            ('mmpetl.models.adapters.rep_adapter', 'RepAdapterBackbone'),
            ('mmpetl.models.adapters.arc', 'ARCBackbone'),
            ('mmpetl.models.adapters.e3va', 'E3VABackbone'),
            ('mmpetl.models.petl', 'AdaptedSite'),
            ('mmpetl.models.merge', 'merge_adapters'),
            ('mmpetl.apis.serving', 'AdapterSwitcher'),
            ('mmpetl.apis.adapter_file', 'load_adapter')):
        page = (out / 'api' / f'{module}.html').read_text(encoding='utf-8')
        assert f'id="{module}.{name}"' in page, name


def test_built_pages_load_nothing_from_the_network(built_docs):
    """Scripts, styles and MathJax come from the built site itself: no
    page references a CDN or any other remote asset."""
    out, _ = built_docs
    remote = re.compile(r'<(?:script|link)[^>]+(?:src|href)="(?:https?:)?//')
    pages = list(out.rglob('*.html'))
    assert len(pages) > 60
    assert [str(p) for p in pages if remote.search(
        p.read_text(encoding='utf-8'))] == []
    assert (out / '_static' / 'mathjax' / 'tex-chtml.js').is_file()


#: Appended to a copy of a built page: once the page's scripts ran, records
#: on <body> what a reader sees (MathJax's rendered formulas, the first wide
#: table's scrolling) for ``--dump-dom`` to show.
PROBE = r"""<script>
window.addEventListener('load', function () {
  setTimeout(function () {
    var wrapper = document.querySelector('.wide-table .table-wrapper');
    var style = wrapper && getComputedStyle(wrapper);
    document.body.setAttribute('data-probe', JSON.stringify({
      math: document.querySelectorAll('mjx-container').length,
      raw_tex: document.body.innerText.indexOf('\\frac') >= 0,
      overflow: style ? style.overflowX : null,
      scrolls: wrapper ? wrapper.scrollWidth > wrapper.clientWidth : null,
      sortable: document.querySelectorAll('.sortable th').length}));
  }, 3000);
});
</script>"""


def browser():
    return next(filter(None, map(shutil.which, (
        'chromium', 'chromium-browser', 'google-chrome'))), None)


def probe_page(out, page, tmp_path):
    """What a headless Chromium shows of ``page`` (a built page), at
    1000x800, offline (file:// URLs, network off)."""
    source = out / page
    probe = source.with_name(f'probe_{source.name}')
    probe.write_text(source.read_text(encoding='utf-8').replace(
        '</body>', PROBE + '</body>'), encoding='utf-8')
    done = subprocess.run(
        [browser(), '--headless', '--no-sandbox', '--disable-gpu',
         '--window-size=1000,800', '--virtual-time-budget=15000',
         '--proxy-server=127.0.0.1:9', f'--user-data-dir={tmp_path}',
         '--dump-dom', probe.as_uri()],
        capture_output=True, text=True, timeout=120)
    found = re.search(r'data-probe="([^"]*)"', done.stdout)
    assert found, done.stderr[-2000:]
    import html
    import json
    return json.loads(html.unescape(found.group(1)))


@pytest.mark.skipif(browser() is None, reason='no Chromium installed')
def test_pages_in_a_headless_browser(built_docs, tmp_path):
    """Formulas are typeset offline by the MathJax the site serves; the
    wide, sortable tables of the method guide scroll sideways within a
    1000-px window instead of being clipped."""
    out, _ = built_docs
    math = probe_page(out, 'methods/lora.html', tmp_path / 'a')
    assert math['math'] >= 2 and not math['raw_tex'], math
    guide = probe_page(out, 'which_method.html', tmp_path / 'b')
    assert guide['overflow'] == 'auto' and guide['scrolls'], guide
    assert guide['sortable'] >= 9, guide


def test_api_reference_covers_every_public_module():
    """docs/en/api/ has one page per module of the package, named after it
    and listed in its index (after adding or moving a module,
    ``python docs/gen_api.py`` writes the pages again)."""
    import pkgutil

    import mmpetl
    api = osp.join(DOCS, 'api')
    documented = set()
    for page in os.listdir(api):
        if page == 'index.md':
            continue
        with open(osp.join(api, page), encoding='utf-8') as f:
            modules = re.findall(r'automodule:: (\S+)', f.read())
        assert modules == [page[:-len('.md')]], page
        documented.add(modules[0])
    with open(osp.join(api, 'index.md'), encoding='utf-8') as f:
        listed = re.findall(r'^(mmpetl[\w.]*)$', f.read(), re.M)
    assert sorted(listed) == sorted(documented)
    public = {'mmpetl'} | {
        info.name for info in pkgutil.walk_packages(mmpetl.__path__, 'mmpetl.')
        if not any(part.startswith('_') for part in info.name.split('.'))}
    assert sorted(public - documented) == []
    assert sorted(documented - public) == []


def test_warnings_fail_the_build(tmp_path):
    """The same command refuses a page with a broken internal link: the
    configuration turns MyST's missing-target warnings into errors."""
    src = tmp_path / 'src'
    src.mkdir()
    shutil.copy(osp.join(DOCS, 'conf.py'), src / 'conf.py')
    (src / 'index.md').write_text(
        '# Index\n\nSee [the tools](tools.md) and [a heading](#nowhere).\n')
    done = sphinx(str(src), str(tmp_path / 'html'))
    assert done.returncode != 0
    assert "cross-reference target not found: 'tools.md'" in done.stdout
    assert "'nowhere'" in done.stdout


def test_markdown_links_stay_inside_the_repository():
    checker = load_checker()
    problems = []
    for path in checker.markdown_files():
        problems += checker.check_file(path)
    assert problems == []
    with open(osp.join(ROOT, 'README.md'), encoding='utf-8') as f:
        assert len(f.read().split('\n')) <= 301  # 300 lines and the last \n


def test_link_check_finds_each_kind_of_problem(tmp_path):
    checker = load_checker()
    (tmp_path / 'docs').mkdir()
    (tmp_path / 'docs' / 'page.md').write_text('# Page\n\n## A heading\n')
    (tmp_path / 'README.md').write_text('\n'.join([
        '# Readme',
        '[ok](docs/page.md#a-heading) [ok](#readme) [url](https://x.org/a)',
        '[gone](docs/missing.md)',
        '[anchor](docs/page.md#no-heading)',
        '[out](../elsewhere/README.md)',
        'logs in /' + 'tmp/run.log and /' + 'work/project/x',
        'see shared/' + 'reference/notes',
        '```',
        '[in code](not/checked.md)',
        '```',
    ]) + '\n')
    problems = checker.check_file(str(tmp_path / 'README.md'),
                                  root=str(tmp_path))
    kinds = [p.split(': ')[1] for p in problems]
    assert kinds == [
        'broken link', 'broken anchor', 'link leaves the repository',
        'absolute path of a machine', 'names a file outside the repository'
    ], problems
    assert problems[0].startswith('README.md:3: ')
