# Copyright (c) mmpetl contributors. All rights reserved.
from mmpetl.registry import MODELS
from .houlsby import HoulsbyAdapterBackbone


@MODELS.register_module()
class PfeifferAdapterBackbone(HoulsbyAdapterBackbone):
    r"""Pfeiffer adapters: a sequential bottleneck after every block's MLP
    only.

    `AdapterFusion: Non-Destructive Task Composition for Transfer Learning
    <https://arxiv.org/abs/2005.00247>`_ (Pfeiffer et al., EACL 2021), as
    OSU-MLB/PETL_Vision runs it (``rand_p_adapter``: ``ft_mlp_mode:
    sequential_after``, no attention adapter):

    .. math::
        a(h) = h + s \cdot W_{up}\,\mathrm{drop}(\mathrm{ReLU}(
               W_{down} h + b_{down})) + s\,b_{up}

    on the output ``h`` of the MLP's last linear (site kind ``fc2``) of
    every block. Defaults, init and deviations as
    :class:`HoulsbyAdapterBackbone` (bottleneck 8, ``s = 1``, ReLU, dropout
    0.1, xavier). KMnP/vpt's Pfeiffer baseline differs: GELU, no dropout,
    reduction factor 8 (``r = d / 8``: 96 at ViT-B) and both projections
    zero-initialised (so only the up-projection's bias gets a gradient at
    first): ``bottleneck=96, act_cfg=dict(type='GELU'), dropout=0`` gives
    its shape. Non-linear: it does not fold; merging refuses it in one
    line.

    Shapes: tokens (..., d) -> (..., d). Trainable parameters per block:
    ``2 d r + r + d``; ViT-B/16 (``r = 8``): 156,768 (0.16M); ``r = 96``:
    1,779,840.

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        **kwargs: ``bottleneck``, ``scale``, ``dropout``, ``act_cfg``,
            ``init`` of :class:`HoulsbyAdapterBackbone`; ``sites`` (default
            ``('fc2',)``), ``targets``, ``check_input_shape``,
            ``save_frozen``, ``init_cfg`` of
            :class:`~mmpetl.models.AdapterBackbone`.
    """

    method = 'PfeifferAdapter'
    where = 'after the MLP'
    default_sites = ('fc2', )
