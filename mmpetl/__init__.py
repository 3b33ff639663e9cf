# Copyright (c) mmpetl contributors. All rights reserved.
"""mmpetl: parameter-efficient transfer learning for OpenMMLab 2.x.

Importing mmpetl applies its compatibility fixes
(:mod:`mmpetl.utils.compat`) and its file IO policies (:mod:`mmpetl.fileio`:
safe loading, guarded outputs, checkpoint configs as data), and registers its modules in the ``mmpetl``
scope; the names below are its Python API::

    from mmpetl import RepAdapterBackbone, merge_adapters
    classifier.backbone = RepAdapterBackbone(backbone=classifier.backbone)
"""
from .fileio.configs import read_checkpoint_configs_as_data
from .fileio.outputs import register_file_backend
from .fileio.safe_load import register_checkpoint_loaders
from .utils.compat import apply_all as _apply_compat_fixes
from .version import __version__, version_info

_apply_compat_fixes()
# The file IO policies: every checkpoint scheme loads safely, the runner
# writes through the output guard, configs carried by checkpoints are data.
register_checkpoint_loaders()
register_file_backend()
read_checkpoint_configs_as_data()

# The wrappers register themselves in the ``mmpetl`` scope as they load.
from .apis.adapter_file import load_adapter  # noqa: E402
from .apis.reparam import reparameterize_checkpoint  # noqa: E402
from .apis.serving import AdapterSwitcher  # noqa: E402
from .models import (AdapterBackbone, AdaptFormerBackbone,  # noqa: E402
                     ARCBackbone, BitFitBackbone, ConvpassBackbone,
                     E3VABackbone, FacTBackbone, FrozenBackbone,
                     HoulsbyAdapterBackbone, LNTuningBackbone, LoRABackbone,
                     MonaBackbone, PfeifferAdapterBackbone,
                     RepAdapterBackbone, SSFBackbone, VPTBackbone,
                     count_parameters, print_trainable_parameters)
from .models.merge import merge_adapters, merge_blockers  # noqa: E402

__all__ = [
    '__version__', 'version_info', 'FrozenBackbone', 'AdapterBackbone',
    'RepAdapterBackbone', 'ARCBackbone', 'E3VABackbone', 'LoRABackbone',
    'SSFBackbone', 'BitFitBackbone', 'LNTuningBackbone', 'FacTBackbone',
    'AdaptFormerBackbone', 'HoulsbyAdapterBackbone',
    'PfeifferAdapterBackbone', 'ConvpassBackbone', 'VPTBackbone',
    'MonaBackbone', 'merge_adapters', 'merge_blockers',
    'reparameterize_checkpoint', 'count_parameters',
    'print_trainable_parameters', 'AdapterSwitcher', 'load_adapter'
]
