# Copyright (c) mmpetl contributors. All rights reserved.
from .parameter_count_hook import ParameterCountHook, count_parameters
from .reparam_checkpoint_hook import ReparamCheckpointHook

__all__ = ['ParameterCountHook', 'ReparamCheckpointHook', 'count_parameters']
