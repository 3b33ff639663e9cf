# Copyright (c) mmpetl contributors. All rights reserved.
from .annotation_errors import AnnotationError
from .embedded import (write_digits_task, write_fewshot_standin,
                       write_holdout_split, write_lfw_faces_task,
                       write_vtab1k_standin)
from .embedded_video import write_motion_task
from .fewshot import (FEWSHOT_SEEDS, FEWSHOT_SETS, FEWSHOT_SHOTS, FewShot,
                      FewShotSet, fewshot_set)
from .fgvc import FGVC, FGVC_SETS, FGVCSet, fgvc_set
from .split_check import SplitCheck, check_split_data
from .vtab1k import (VTAB1K_GROUPS, VTAB1K_TASKS, VTABTask, VTAB1k,
                     vtab1k_task)

__all__ = [
    'write_digits_task', 'write_lfw_faces_task', 'write_vtab1k_standin',
    'write_motion_task', 'AnnotationError', 'VTAB1k', 'VTAB1K_TASKS',
    'VTAB1K_GROUPS', 'VTABTask', 'vtab1k_task', 'FGVC', 'FGVC_SETS',
    'FGVCSet', 'fgvc_set', 'FewShot', 'FEWSHOT_SETS', 'FEWSHOT_SHOTS',
    'FEWSHOT_SEEDS', 'FewShotSet', 'fewshot_set', 'check_split_data', 'SplitCheck',
    'write_fewshot_standin', 'write_holdout_split'
]
