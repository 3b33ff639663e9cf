# Copyright (c) mmpetl contributors. All rights reserved.
"""The wheel as the OpenMMLab toolboxes build it: configs and tools under
mmpetl/.mim/, and ``_base_ = 'mmpetl::...'`` from a user's own project."""
import hashlib
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import sysconfig
import zipfile

import pytest

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# What a clean checkout does not have (.gitignore), and the git metadata.
NOT_IN_CHECKOUT = shutil.ignore_patterns('.git', '.venv', '__pycache__',
                                         '*.pyc', '*.egg-info', 'work_dirs',
                                         '.pytest_cache', 'data', 'build',
                                         'dist', '.mim')

USER_CONFIG = """
_base_ = 'mmpetl::quickstart/vit-tiny_digits5-9_repadapter.py'
# No pre-trained file in this project: a randomly initialised ViT.
model = dict(
    backbone=dict(backbone=dict(init_cfg=None)), head=dict(num_classes=3))
"""

USER_SCRIPT = """
import json, sys
import torch
import mmpetl
from mmengine.config import Config
from mmpetl.apis.reparam import build_model
from mmpetl.models import AdaptedLinear

cfg = Config.fromfile('my_config.py')
model = build_model(cfg)
logits = model(torch.randn(2, 3, 32, 32), mode='tensor')
json.dump(dict(
    mmpetl=mmpetl.__file__,
    backbone=cfg.model.backbone.type,
    default_scope=cfg.default_scope,
    adapters=sum(isinstance(m, AdaptedLinear) for m in model.modules()),
    logits=list(logits.shape)), sys.stdout)
"""


def clean_copy(dest):
    """The repository as a fresh clone has it."""
    shutil.copytree(ROOT, dest, ignore=NOT_IN_CHECKOUT, symlinks=True)
    return dest


def run(args, **kwargs):
    result = subprocess.run(args, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + \
        result.stderr[-3000:]
    return result


def use_mmpetl_from(site, tmp_path):
    """Run the user's script in a project outside the repository, with
    ``site`` (an installed mmpetl) first on the path."""
    project = tmp_path / 'my_project'
    project.mkdir()
    (project / 'my_config.py').write_text(USER_CONFIG)
    env = dict(os.environ, PYTHONPATH=str(site))
    result = run([sys.executable, '-c', USER_SCRIPT], cwd=project, env=env)
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_user_model(report, site):
    assert report['mmpetl'].startswith(str(site))
    assert report['backbone'] == 'mmpetl.RepAdapterBackbone'
    assert report['default_scope'] == 'mmpretrain'
    # RepAdapter in front of qkv and fc1 of each of the 4 layers.
    assert report['adapters'] == 8
    assert report['logits'] == [2, 3]


@pytest.fixture(scope='module')
def wheel(tmp_path_factory):
    """The wheel of a clean copy of the repository, as ``pip wheel .``
    builds it."""
    tmp = tmp_path_factory.mktemp('wheel')
    source = clean_copy(tmp / 'source')
    run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '--disable-pip-version-check', '-q', '-w',
        str(tmp / 'dist'),
        str(source)
    ])
    wheel, = (tmp / 'dist').glob('mmpetl-*.whl')
    return wheel


def test_wheel_carries_configs_and_tools_and_resolves_mmpetl_bases(
        wheel, tmp_path):
    names = set(zipfile.ZipFile(wheel).namelist())
    configs = {
        osp.relpath(osp.join(d, f), ROOT)
        for d, _, files in os.walk(osp.join(ROOT, 'configs'))
        for f in files if f.endswith('.py')
    }
    assert {f'mmpetl/.mim/{c}' for c in configs} <= names
    for tool in ('train.py', 'test.py', 'reparam.py', 'dist_train.sh',
                 'dist_test.sh', 'slurm_train.sh', 'slurm_test.sh',
                 'python.sh', 'benchmarks/inference.py'):
        assert f'mmpetl/.mim/tools/{tool}' in names
    assert 'mmpetl/.mim/model-index.yml' in names
    # Only the package at the top (and the start-up hook that resolves
    # mmpetl:: bases): no configs/, tools/ or tests/ there.
    assert {n.split('/')[0] for n in names} == {
        'mmpetl', wheel.name.split('-py')[0] + '.dist-info',
        '_mmpetl_bases.py', 'mmpetl_bases.pth'
    }
    metadata = zipfile.ZipFile(wheel).read(
        wheel.name.split('-py')[0] + '.dist-info/METADATA').decode()
    import mmpetl
    for line in (f'Version: {mmpetl.__version__}', 'License: Apache-2.0',
                 'License-File: LICENSE', 'Requires-Python: >=3.10',
                 'Requires-Dist: scikit-learn', 'Provides-Extra: dense',
                 'Provides-Extra: video', 'Provides-Extra: docs',
                 'Provides-Extra: mim',
                 'Requires-Dist: openmim; extra == "mim"',
                 'Provides-Extra: tests'):
        assert line in metadata.splitlines(), line

    site = tmp_path / 'site'
    run([
        sys.executable, '-m', 'pip', 'install', '--no-deps',
        '--disable-pip-version-check', '-q', '--target',
        str(site),
        str(wheel)
    ])
    check_user_model(use_mmpetl_from(site, tmp_path), site)


def tree_digest(folder):
    """``{relative path: sha256}`` of every file under ``folder``."""
    return {
        osp.relpath(osp.join(d, f), folder):
        hashlib.sha256(open(osp.join(d, f), 'rb').read()).hexdigest()
        for d, _, files in os.walk(folder) for f in files
    }


def fresh_environment(wheel, tmp_path):
    """A new ``python -m venv`` with the wheel installed, the project's
    heavy dependencies (torch, the toolboxes) visible through a plain path
    entry (which, unlike a site directory, runs none of its .pth files: the
    project's editable mmpetl stays out). Returns (python, site-packages)."""
    venv = tmp_path / 'venv'
    run([sys.executable, '-m', 'venv', '--without-pip', str(venv)])
    python = str(venv / 'bin' / 'python')
    site = run([python, '-c', 'import sysconfig; '
                'print(sysconfig.get_paths()["purelib"])']).stdout.strip()
    deps = sysconfig.get_paths()['purelib']
    with open(osp.join(site, 'project_dependencies.pth'), 'w') as f:
        f.write(deps + '\n')
    run([
        sys.executable, '-m', 'pip', '--python', python, 'install',
        '--no-deps', '--disable-pip-version-check', '-q',
        str(wheel)
    ])
    return python, site


def test_wheel_in_a_fresh_environment_runs_tools_outside_the_repository(
        wheel, tmp_path):
    """From a directory outside the repository, with only the wheel's
    mmpetl: ``python -m mmpetl`` runs the tools, ``--help`` writes nothing,
    vtab.py finds its configs in the package, outputs land under the
    current directory, mmpretrain's own tool reads ``mmpetl::`` bases (and
    cannot without the wheel's start-up hook), and the installed files
    are the same after as before."""
    python, site = fresh_environment(wheel, tmp_path)
    project = tmp_path / 'project'
    project.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}

    def tool(*args, ok=True):
        result = subprocess.run([python, *args], cwd=project, env=env,
                                capture_output=True, text=True)
        assert (result.returncode == 0) == ok, \
            result.stdout[-3000:] + result.stderr[-3000:]
        return result

    installed = tree_digest(site)
    where = tool('-c', 'import mmpetl, sys; print(mmpetl.__file__); '
                 'print(any("editable" in type(f).__name__.lower() or '
                 '"editable" in str(f) for f in sys.meta_path))').stdout
    assert where.split() == [osp.join(site, 'mmpetl', '__init__.py'), 'False']

    assert 'usage: compare.py' in tool('-m', 'mmpetl', 'suites/compare',
                                       '--help').stdout
    assert 'usage: reparam.py' in tool('-m', 'mmpetl', 'reparam',
                                       '--help').stdout
    assert os.listdir(project) == []  # --help has no side effects

    # A real run: the default --config-dir (configs/vtab) from the package.
    out = tool('-m', 'mmpetl', 'suites/vtab', '--dry-run', '--methods',
               'repadapter', '--tasks', 'dtd', '--work-dir', 'runs').stdout
    assert 'repadapter / dtd: top-1' in out
    assert (project / 'runs' / 'results.md').is_file()
    assert (project / 'runs' / 'repadapter' / 'dtd' / 'result.json').is_file()
    assert os.listdir(project) == ['runs']

    # mmpretrain's own tool reads the config before anything imports mmpetl.
    (project / 'my_config.py').write_text(USER_CONFIG)
    mmpretrain_tools = tool(
        '-c', 'import mmpretrain, os; print(os.path.join(os.path.dirname('
        'mmpretrain.__file__), ".mim", "tools"))').stdout.strip()
    print_config = osp.join(mmpretrain_tools, 'misc', 'print_config.py')
    printed = tool(print_config, 'my_config.py').stdout
    assert "type='mmpetl.RepAdapterBackbone'" in printed
    hook = osp.join(site, 'mmpetl_bases.pth')
    os.rename(hook, hook + '.off')
    try:
        failed = tool(print_config, 'my_config.py', ok=False)
    finally:
        os.rename(hook + '.off', hook)
    assert 'does not support to load mmpetl config' in failed.stderr

    assert tree_digest(site) == installed


def test_editable_install_links_configs(tmp_path):
    """``pip install -e .`` (setuptools' build_editable, called as pip
    does) links configs/, tools/ and model-index.yml into mmpetl/.mim, so
    mmpetl:: bases follow the checkout."""
    source = clean_copy(tmp_path / 'source')
    dist = tmp_path / 'dist'
    dist.mkdir()
    run([
        sys.executable, '-c',
        'import sys; from setuptools import build_meta; '
        'print(build_meta.build_editable(sys.argv[1]))',
        str(dist)
    ], cwd=source)
    mim = source / 'mmpetl' / '.mim'
    for name in ('configs', 'tools', 'model-index.yml'):
        assert osp.islink(mim / name)
        assert osp.samefile(mim / name, source / name)
    editable, = dist.glob('mmpetl-*.whl')
    # The start-up hook, as the wheel installs it, at the top of
    # site-packages: stock tools read mmpetl:: bases in the editable
    # install too (_mmpetl_bases.py is found through setuptools' finder).
    with zipfile.ZipFile(editable) as files:
        assert files.read('mmpetl_bases.pth') == (
            source / 'mmpetl_bases.pth').read_bytes()
    # The checkout on the path, as the tools' scripts put it.
    check_user_model(use_mmpetl_from(source, tmp_path), source)


STARTUP_CHECK = """
import sys, site
before = set(sys.modules)
meta_path = len(sys.meta_path)
site.addsitedir(sys.argv[1])
# Nothing imported at start-up (but a codec site may need for .pth files),
# one finder more.
print(sorted(m for m in set(sys.modules) - before
             if not m.startswith('encodings.')),
      len(sys.meta_path) - meta_path)
# The environment's packages as plain path entries (none of their .pth
# files run), and mmpetl itself, for the first mmpetl:: path.
sys.path += [sys.argv[3], sys.argv[2]]
from mmengine.config import Config
print(len(sys.meta_path) - meta_path, 'mmpetl' in sys.modules)
path, scope = Config._get_cfg_path(
    'mmpetl::quickstart/vit-tiny_digits0-4_pretrain.py', 'my_config.py')
print(path.endswith('configs/quickstart/vit-tiny_digits0-4_pretrain.py'),
      scope, 'mmpetl' in sys.modules)
"""


def test_startup_hook_imports_nothing_until_mmengine_config(tmp_path):
    """The start-up hook of every interpreter of the environment costs no
    import (tools/benchmarks/startup.py times it): ``mmpetl_bases.pth``
    imports nothing until mmengine's config module is imported, then
    leaves ``sys.meta_path``, and the first ``mmpetl::`` path imports
    mmpetl and resolves to the shipped config."""
    site = tmp_path / 'site'
    site.mkdir()
    for name in ('mmpetl_bases.pth', '_mmpetl_bases.py'):
        shutil.copyfile(osp.join(ROOT, name), site / name)
    env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
    lines = run([sys.executable, '-S', '-c', STARTUP_CHECK, str(site), ROOT,
                 sysconfig.get_paths()['purelib']],
                env=env).stdout.splitlines()
    assert lines == ['[] 1', '0 False', 'True None True']


def test_build_outputs_are_ignored_by_git(tmp_path):
    if shutil.which('git') is None:
        pytest.skip('git is not installed')
    paths = ['build/lib/x.py', 'dist/mmpetl-0.1.0.whl',
             'mmpetl.egg-info/PKG-INFO', 'mmpetl/.mim/configs']
    result = subprocess.run(['git', 'check-ignore', '--no-index', *paths],
                            cwd=ROOT, capture_output=True, text=True)
    if result.returncode == 128:
        pytest.skip('not a git checkout')
    assert result.stdout.split() == paths
