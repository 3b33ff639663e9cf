# Copyright (c) mmpetl contributors. All rights reserved.
from .adapted_linear import (AdaptedLinear, FoldTarget, InputAffineSite,
                             LowRankFold, fold_adapter)
from .adapted_module import AdaptedModule, ModuleSite
from .adapter_backbone import BackboneArg, FrozenBackbone
from .adapter_wrapper import AdapterBackbone
from .adapters import *  # noqa: F401,F403
from .adapters import __all__ as _methods
from .attach_sites import (ATTACH_SITES, SITE_FORMS, AttachSite,
                           SiteSpec, find_attach_sites)
from .mergeable_adapter import AffineStandIn, MergeableAdapter
from .nonfoldable import (NonFoldableSite, ParallelSite, SequentialSite,
                          StreamParallelSite)
from .output_affine import OutputAffineSite, ScaleShift
from .parameter_count import (count_parameters, print_trainable_parameters,
                              trainable_summary)
from .petl import (AdaptedSite, MergedFold, PETLModule, PreparedFold,
                   adapted_sites)
from .pretrained_check import PretrainedLoadError, check_pretrained_loaded
from .site_check import AttachSiteError, check_sites
from .weight_delta import DeltaLinear, WeightDelta

__all__ = [
    'PETLModule', 'AdaptedSite', 'adapted_sites', 'PreparedFold',
    'MergedFold', 'LowRankFold', 'MergeableAdapter',
    'InputAffineSite', 'AdaptedLinear', 'ModuleSite', 'AdaptedModule',
    'fold_adapter', 'FoldTarget', 'OutputAffineSite', 'ScaleShift',
    'WeightDelta', 'DeltaLinear', 'NonFoldableSite', 'ParallelSite',
    'StreamParallelSite', 'SequentialSite', 'AffineStandIn', 'AttachSiteError',
    'check_sites', 'PretrainedLoadError', 'check_pretrained_loaded',
    'FrozenBackbone', 'AdapterBackbone', 'ATTACH_SITES', 'SITE_FORMS',
    'AttachSite', 'SiteSpec', 'find_attach_sites', 'BackboneArg',
    'count_parameters', 'print_trainable_parameters', 'trainable_summary',
    *_methods
]
