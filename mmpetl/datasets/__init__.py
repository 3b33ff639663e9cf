# Copyright (c) mmpetl contributors. All rights reserved.
from .annotation_errors import AnnotationError
from .embedded import (write_digits_task, write_lfw_faces_task,
                       write_vtab1k_standin)
from .embedded_video import write_motion_task
from .fgvc import FGVC, FGVC_SETS, FGVCSet, fgvc_set
from .vtab1k import (VTAB1K_GROUPS, VTAB1K_TASKS, VTABTask, VTAB1k,
                     vtab1k_task)

__all__ = [
    'write_digits_task', 'write_lfw_faces_task', 'write_vtab1k_standin',
    'write_motion_task', 'AnnotationError', 'VTAB1k', 'VTAB1K_TASKS',
    'VTAB1K_GROUPS', 'VTABTask', 'vtab1k_task', 'FGVC', 'FGVC_SETS',
    'FGVCSet', 'fgvc_set'
]
