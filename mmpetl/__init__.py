# Copyright (c) mmpetl contributors. All rights reserved.
"""mmpetl: parameter-efficient transfer learning for OpenMMLab 2.x."""
from .utils.compat import apply_all as _apply_compat_fixes

__version__ = '0.1.0'

_apply_compat_fixes()
