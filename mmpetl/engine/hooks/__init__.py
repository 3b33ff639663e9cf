# Copyright (c) mmpetl contributors. All rights reserved.
from .exact_resume_hook import ExactResumeHook, add_exact_resume_hook
from .noah_supernet_hook import NOAHSupernetHook
from .parameter_count_hook import (ParameterCountHook, count_parameters,
                                   site_lines)
from .reparam_checkpoint_hook import ReparamCheckpointHook

__all__ = [
    'ExactResumeHook', 'NOAHSupernetHook', 'ParameterCountHook',
    'ReparamCheckpointHook', 'add_exact_resume_hook', 'count_parameters',
    'site_lines'
]
