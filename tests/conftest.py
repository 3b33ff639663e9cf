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
