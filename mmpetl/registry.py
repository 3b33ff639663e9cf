# Copyright (c) mmpetl contributors. All rights reserved.
"""Registries of the ``mmpetl`` scope.

They are children of MMEngine's root registries, so a config built by any
OpenMMLab toolbox can name ``type='mmpetl.RepAdapterBackbone'`` without
``custom_imports``: MMEngine imports ``mmpetl.registry`` when it meets the
``mmpetl.`` scope prefix, and ``locations`` imports the modules that register
into it.
"""
from mmengine.registry import DATASETS as MMENGINE_DATASETS
from mmengine.registry import HOOKS as MMENGINE_HOOKS
from mmengine.registry import MODEL_WRAPPERS as MMENGINE_MODEL_WRAPPERS
from mmengine.registry import MODELS as MMENGINE_MODELS
from mmengine.registry import \
    PARAM_SCHEDULERS as MMENGINE_PARAM_SCHEDULERS
from mmengine.registry import Registry

MODELS = Registry(
    'model',
    parent=MMENGINE_MODELS,
    scope='mmpetl',
    locations=['mmpetl.models'])
MODEL_WRAPPERS = Registry(
    'model_wrapper',
    parent=MMENGINE_MODEL_WRAPPERS,
    scope='mmpetl',
    locations=['mmpetl.engine.distributed'])
HOOKS = Registry(
    'hook',
    parent=MMENGINE_HOOKS,
    scope='mmpetl',
    locations=['mmpetl.engine.hooks'])
DATASETS = Registry(
    'dataset',
    parent=MMENGINE_DATASETS,
    scope='mmpetl',
    locations=['mmpetl.datasets'])
PARAM_SCHEDULERS = Registry(
    'parameter scheduler',
    parent=MMENGINE_PARAM_SCHEDULERS,
    scope='mmpetl',
    locations=['mmpetl.engine'])
