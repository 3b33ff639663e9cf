# Copyright (c) mmpetl contributors. All rights reserved.
from .parameter_count_hook import (ParameterCountHook, count_parameters,
                                   site_lines)
from .reparam_checkpoint_hook import ReparamCheckpointHook

__all__ = ['ParameterCountHook', 'ReparamCheckpointHook', 'count_parameters',
           'site_lines']
