# Copyright (c) mmpetl contributors. All rights reserved.
from typing import Dict

from torch import nn

from mmpetl.registry import MODELS
from ..adapter_backbone import FrozenBackbone

#: The norm layers whose affine parameters LN-tuning trains.
NORM_TYPES = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._NormBase)


@MODELS.register_module()
class LNTuningBackbone(FrozenBackbone):
    """LN-tuning: train the weight and bias of every norm layer of the
    frozen backbone.

    `Towards a Unified View on Visual Parameter-Efficient Transfer Learning
    <https://arxiv.org/abs/2210.00788>`_ and OSU-MLB/PETL_Vision (``--ln``)
    run it as a baseline. A parameter-selection method: norms are found by
    module type (:data:`NORM_TYPES`, subclasses such as ``LayerNorm2d``
    included), it adds no module, its checkpoint holds the tuned stock
    norms, and its merged model is the stock backbone with them (nothing to
    fold). Batch norms keep their running statistics frozen (evaluation
    mode); their affine trains.

    Trainable parameters: ViT-B/16 ``25 x 2 x 768 = 38,400``.

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        save_frozen (bool): See :class:`FrozenBackbone`.
        init_cfg (dict, optional): See :class:`FrozenBackbone`.
    """

    def selected_parameters(self) -> Dict[str, nn.Parameter]:
        return {
            f'{path}.{name}' if path else name: param
            for path, module in self.backbone.named_modules()
            if isinstance(module, NORM_TYPES)
            for name, param in module.named_parameters(recurse=False)
        }
