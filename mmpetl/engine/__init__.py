# Copyright (c) mmpetl contributors. All rights reserved.
from .schedulers import TimmCosineLR

__all__ = ['TimmCosineLR']
