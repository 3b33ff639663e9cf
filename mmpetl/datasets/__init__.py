# Copyright (c) mmpetl contributors. All rights reserved.
from .embedded import write_digits_task

__all__ = ['write_digits_task']
