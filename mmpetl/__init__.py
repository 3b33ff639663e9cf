# Copyright (c) mmpetl contributors. All rights reserved.
"""mmpetl: parameter-efficient transfer learning for OpenMMLab 2.x."""
from .compat import apply_all as _apply_compat_fixes

from .version import __version__, version_info

_apply_compat_fixes()
