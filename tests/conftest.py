# Copyright (c) mmpetl contributors. All rights reserved.
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


@pytest.fixture(autouse=True)
def _restore_default_scope():
    """Each test leaves mmengine's current default scope as it found it.

    ``init_default_scope`` (runners, ``build_model``) makes a new current
    ``DefaultScope`` that outlives the test; a later test that builds with
    unscoped type names would then look them up in another toolbox's
    registry. The current instance is the last one created, so dropping the
    ones a test created restores the previous one.
    """
    from mmengine.registry import DefaultScope
    before = set(DefaultScope._instance_dict)
    yield
    for name in set(DefaultScope._instance_dict) - before:
        del DefaultScope._instance_dict[name]
