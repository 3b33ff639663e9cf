# Copyright (c) mmpetl contributors. All rights reserved.
"""The wheel as the OpenMMLab toolboxes build it: configs and tools under
mmpetl/.mim/, and ``_base_ = 'mmpetl::...'`` from a user's own project."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
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


def test_wheel_carries_configs_and_tools_and_resolves_mmpetl_bases(
        tmp_path):
    source = clean_copy(tmp_path / 'source')
    run([
        sys.executable, '-m', 'pip', 'wheel', '--no-deps',
        '--no-build-isolation', '--disable-pip-version-check', '-q', '-w',
        str(tmp_path / 'dist'),
        str(source)
    ])
    wheel, = (tmp_path / 'dist').glob('mmpetl-*.whl')
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
    # Only the package at the top: no configs/, tools/ or tests/ there.
    assert {n.split('/')[0] for n in names} == {
        'mmpetl', wheel.name.split('-py')[0] + '.dist-info'
    }

    site = tmp_path / 'site'
    run([
        sys.executable, '-m', 'pip', 'install', '--no-deps',
        '--disable-pip-version-check', '-q', '--target',
        str(site),
        str(wheel)
    ])
    check_user_model(use_mmpetl_from(site, tmp_path), site)


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
    assert len(list(dist.glob('mmpetl-*.whl'))) == 1
    # The checkout on the path, as the tools' scripts put it.
    check_user_model(use_mmpetl_from(source, tmp_path), source)


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
