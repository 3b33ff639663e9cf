# Copyright (c) mmpetl contributors. All rights reserved.
"""The Python API beside the configs: wrappers around a built backbone
(with the checks of a config build), quiet builds, the trainable-parameter
summary. The page's examples run in tests/test_api_examples.py."""
import contextlib
import copy
import io
import logging
import uuid

import pytest
import torch
from mmengine.config import ConfigDict
from mmengine.logging import MMLogger
from torch import nn

import mmpetl
from mmpetl.utils.log_utils import init_records_at_debug, log_to_file
from mmpetl.models import AdaptedLinear, PretrainedLoadError
from mmpetl.registry import MODELS


@pytest.fixture(autouse=True)
def fresh_session_logger():
    """The current MMLogger of a fresh Python session (console only):
    an earlier test in this process may have left a Runner's logger, with
    its log file, current."""
    name = f'test-api-{uuid.uuid4().hex}'
    logger = MMLogger.get_instance(name, logger_name='mmengine')
    yield logger
    MMLogger._instance_dict.pop(name, None)


def test_public_names():
    for name in mmpetl.__all__:
        assert getattr(mmpetl, name) is not None, name
    assert mmpetl.RepAdapterBackbone is MODELS.get('RepAdapterBackbone')
    assert mmpetl.__version__ == '.'.join(map(str, mmpetl.version_info))


def test_built_backbone_gets_the_checks_of_a_config(vit_cfg):
    """A built backbone whose Pretrained init_cfg was never applied is
    refused and left untouched; once initialised, it wraps into the model
    its config builds (same frozen weights, same trainable keys), and a
    later init_weights() keeps its weights."""
    vit = MODELS.build(ConfigDict(copy.deepcopy(vit_cfg)))
    with pytest.raises(PretrainedLoadError, match=r'init_weights\(\)'):
        mmpetl.RepAdapterBackbone(backbone=vit)
    assert not any(isinstance(m, AdaptedLinear) for m in vit.modules())

    vit.init_weights()
    built = mmpetl.RepAdapterBackbone(backbone=vit, hidden_dim=4)
    assert built.backbone is vit
    from_cfg = mmpetl.RepAdapterBackbone(backbone=vit_cfg, hidden_dim=4)
    assert built.backbone_fingerprint() == from_cfg.backbone_fingerprint()
    assert built.state_dict().keys() == from_cfg.state_dict().keys()

    frozen = {k: v.clone() for k, v in vit.state_dict().items()}
    built.init_weights()
    for key, value in vit.state_dict().items():
        torch.testing.assert_close(value, frozen[key], rtol=0, atol=0)

    # A user error is the same error whichever way the backbone comes.
    errors, stock = [], MODELS.build(ConfigDict(vit_cfg))
    stock.init_weights()
    for backbone in (vit_cfg, stock):
        with pytest.raises(Exception) as error:
            mmpetl.LoRABackbone(backbone=backbone, sites=())
        errors.append((type(error.value), str(error.value)))
    assert errors[0] == errors[1]
    with pytest.raises(TypeError, match='already wrapped'):
        mmpetl.LoRABackbone(backbone=built)
    with pytest.raises(TypeError, match='config dict or a built nn.Module'):
        mmpetl.LoRABackbone(backbone=[vit_cfg])


@contextlib.contextmanager
def console_of(logger):
    """What ``logger`` shows on a console at INFO, as a string buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def test_python_build_is_quiet_and_a_log_file_gets_the_records(
        vit_cfg, capsys, tmp_path):
    logger = MMLogger.get_current_instance()
    with console_of(logger) as console:
        mmpetl.RepAdapterBackbone(backbone=vit_cfg)
    assert console.getvalue() == ''
    assert capsys.readouterr().out == ''  # mmengine's print()s

    log_file = tmp_path / 'build.log'
    with log_to_file(str(log_file)):
        mmpetl.RepAdapterBackbone(backbone=vit_cfg)
    text = log_file.read_text()
    assert 'PretrainedInit' in text
    assert 'RepAdapterBackbone: 4 adapters' in text


def test_quiet_builds_keep_warnings_and_honour_debug():
    logger = MMLogger.get_current_instance()
    with console_of(logger) as console, init_records_at_debug():
        logger.info('an init record')
        logger.warning('a missing key')
    assert console.getvalue() == 'a missing key\n'
    level = logger.level
    logger.setLevel(logging.DEBUG)
    try:
        with console_of(logger) as console, init_records_at_debug():
            console_handler = logger.handlers[-1]
            console_handler.setLevel(logging.DEBUG)
            logger.info('an init record')
            print('Loads checkpoint by local backend')
    finally:
        logger.setLevel(level)
    assert console.getvalue() == ('an init record\n'
                                  'Loads checkpoint by local backend\n')


def test_print_trainable_parameters():
    model = nn.Sequential(nn.Linear(2, 3), nn.Linear(3, 1))
    model[0].requires_grad_(False)
    lines = []
    counts = mmpetl.print_trainable_parameters(model, print_fn=lines.append)
    assert counts == dict(total=13, trainable=4, **{'trainable.1': 4})
    assert lines == [
        'trainable params: 4 || all params: 13 || trainable%: 30.7692'
    ]
