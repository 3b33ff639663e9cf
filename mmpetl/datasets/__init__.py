# Copyright (c) mmpetl contributors. All rights reserved.
from .embedded import write_digits_task
from .embedded_video import write_motion_task

__all__ = ['write_digits_task', 'write_motion_task']
