# Copyright (c) mmpetl contributors. All rights reserved.
from contextlib import contextmanager

import pytest

from tests.helpers import (TINY_DET_SWIN, TINY_SEG_SWIN, TINY_SWIN, TINY_VIT,
                           pretrained_cfg)


@pytest.fixture
def vit_cfg(tmp_path):
    return pretrained_cfg(TINY_VIT, tmp_path / 'vit.pth')


@pytest.fixture
def swin_cfg(tmp_path):
    return pretrained_cfg(TINY_SWIN, tmp_path / 'swin.pth')


@pytest.fixture
def seg_swin_cfg(tmp_path):
    return pretrained_cfg(TINY_SEG_SWIN, tmp_path / 'seg_swin.pth')


@pytest.fixture
def det_swin_cfg(tmp_path):
    return pretrained_cfg(TINY_DET_SWIN, tmp_path / 'det_swin.pth')


@contextmanager
def _default_scope_restored():
    """Leave mmengine's current default scope as it was.

    ``init_default_scope`` (runners, ``build_model``) makes a new current
    ``DefaultScope`` that outlives its caller; a later test that builds with
    unscoped type names would then look them up in another toolbox's
    registry. The current instance is the last one created, so dropping the
    ones created meanwhile restores the previous one.
    """
    from mmengine.registry import DefaultScope
    before = set(DefaultScope._instance_dict)
    yield
    for name in set(DefaultScope._instance_dict) - before:
        del DefaultScope._instance_dict[name]


@pytest.fixture(autouse=True, scope='module')
def _module_restores_default_scope():
    """Scopes made by a test module (its module-scoped fixtures too)."""
    with _default_scope_restored():
        yield


@pytest.fixture(autouse=True)
def _test_restores_default_scope():
    """Scopes made by one test."""
    with _default_scope_restored():
        yield
