# Copyright (c) mmpetl contributors. All rights reserved.
from typing import Dict

from torch import nn

from mmpetl.registry import MODELS
from ..adapter_backbone import FrozenBackbone


def is_bias(name: str, param: nn.Parameter) -> bool:
    """Whether a parameter, by its attribute name in its module, is a bias
    vector: ``bias``, or ``*_bias`` (``q_bias`` / ``v_bias`` of BEiT and
    VideoMAE attention, ``in_proj_bias`` of ``nn.MultiheadAttention``)."""
    local = name.rpartition('.')[2]
    return param.dim() == 1 and (local == 'bias' or local.endswith('_bias'))


@MODELS.register_module()
class BitFitBackbone(FrozenBackbone):
    """BitFit: train every bias of the frozen backbone.

    `BitFit: Simple Parameter-efficient Fine-tuning for Transformer-based
    Masked Language-models <https://arxiv.org/abs/2106.10199>`_ (Ben Zaken
    et al., ACL 2022), the PETL-for-vision tables' baseline: the biases of
    every linear, convolution and norm (:func:`is_bias`) train, nothing else
    in the backbone does. A parameter-selection method: it adds no module,
    its checkpoint holds the tuned stock biases, and its merged model is the
    stock backbone with them (nothing to fold). Frozen batch norms keep
    their running statistics (evaluation mode), as every frozen backbone
    here does.

    Trainable parameters: ViT-B/16 ``12 x (768 + 2304 + 768 + 768 + 3072 +
    768) + 768 + 768 = 102,912`` (the tables' 0.10M).

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        save_frozen (bool): See :class:`FrozenBackbone`.
        init_cfg (dict, optional): See :class:`FrozenBackbone`.
    """

    def selected_parameters(self) -> Dict[str, nn.Parameter]:
        return {
            name: param
            for name, param in self.backbone.named_parameters()
            if is_bias(name, param)
        }
