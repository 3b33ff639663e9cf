# Copyright (c) mmpetl contributors. All rights reserved.
from .exact_resume_hook import ExactResumeHook, add_exact_resume_hook
from .parameter_count_hook import (ParameterCountHook, count_parameters,
                                   site_lines)
from .reparam_checkpoint_hook import ReparamCheckpointHook

__all__ = [
    'ExactResumeHook', 'ParameterCountHook', 'ReparamCheckpointHook',
    'add_exact_resume_hook', 'count_parameters', 'site_lines'
]
