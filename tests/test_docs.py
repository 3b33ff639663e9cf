# Copyright (c) mmpetl contributors. All rights reserved.
"""The documentation builds with warnings as errors, and the Markdown of
README.md and docs/ links only to files and headings that exist inside the
repository and names no absolute path of a machine."""
import importlib.util
import os.path as osp
import re
import shutil
import subprocess
import sys

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


def test_docs_build_without_warnings(tmp_path):
    out = tmp_path / 'html'
    done = sphinx(DOCS, str(out))
    assert done.returncode == 0, done.stdout[-5000:]
    assert 'WARNING' not in done.stdout, done.stdout[-5000:]
    # Every page of the layout is built, and the API reference holds the
    # docstrings (autodoc ran on the installed package, nothing mocked).
    for page in ('get_started', 'methods/repadapter', 'methods/e3va',
                 'backbones', 'tasks/classification', 'tasks/video',
                 'tasks/dense', 'tools', 'trust', 'deployment',
                 'benchmarks/index', 'reproducing', 'faq', 'changelog',
                 'api'):
        assert (out / f'{page}.html').is_file(), page
    api = (out / 'api.html').read_text(encoding='utf-8')
    for name in ('RepAdapterBackbone', 'ARCBackbone', 'E3VABackbone',
                 'AdaptedSite', 'merge_adapters', 'AdapterSwitcher'):
        assert re.search(rf'id="mmpetl\.[\w.]+\.{name}"', api), name


def test_api_reference_covers_every_public_module():
    """docs/en/api.md documents every module of the package (after adding
    or moving one, ``python docs/gen_api.py`` writes the page again)."""
    import pkgutil

    import mmpetl
    with open(osp.join(DOCS, 'api.md'), encoding='utf-8') as f:
        documented = set(re.findall(r'automodule:: (\S+)', f.read()))
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
