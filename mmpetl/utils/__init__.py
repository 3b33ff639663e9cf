# Copyright (c) mmpetl contributors. All rights reserved.
from .errors import InputError, UnknownNameError

__all__ = ['InputError', 'UnknownNameError']
