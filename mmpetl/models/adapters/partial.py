# Copyright (c) mmpetl contributors. All rights reserved.
from typing import Dict, Optional

from torch import nn

from mmpetl.registry import MODELS
from ..adapter_backbone import BackboneArg, FrozenBackbone

#: What Partial-1 trains (``unit``): the last block of the last stage (the
#: reference), or the whole last stage.
PARTIAL_UNITS = ('block', 'stage')


@MODELS.register_module()
class Partial1Backbone(FrozenBackbone):
    """Partial-1: fine-tune the end of the backbone, freeze the rest.

    The dense-prediction baseline of the E3VA and V-PETL Bench tables (and
    of VPT's ``partial-1``), from the E3VA authors' code
    (DongshuoYin/CoLin, ``MMDetection/mmdet/models/backbones/
    swin_partial_1.py``: every parameter whose name lacks
    ``stages.3.blocks.1`` is frozen): the stock weights of the **last block
    of the last stage** train (``unit='block'``, default), nothing else of
    the backbone does (not its output norms, not the patch merging).
    ``unit='stage'`` trains the whole last stage instead (in Swin-B/L the
    last stage has two blocks and no patch merging). A parameter-selection
    method: it adds no module, its checkpoint holds the tuned stock
    weights, and its merged model is the stock backbone with them (nothing
    to fold). For the Swin families of mmseg, mmdet and mmpretrain
    (``stages[-1].blocks``); others are refused at build in one line.

    Trainable parameters (one Swin block of width ``d``, ``n`` heads,
    window ``w``, MLP ratio 4): ``12 d^2 + 13 d + (2 w - 1)^2 n``. Swin-B
    (``d = 1024``, 32 heads, window 7): 12,601,632 (the tables' 12.60M);
    Swin-L (1536, 48 heads, window 7): 28,339,632 (28.34M; window 12, the
    ADE20K Swin-L's: 28,356,912).

    Args:
        backbone (dict | nn.Module): The stock Swin backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        unit (str): One of :data:`PARTIAL_UNITS`. Defaults to ``'block'``.
        save_frozen (bool): See :class:`FrozenBackbone`.
        init_cfg (dict, optional): See :class:`FrozenBackbone`.
    """

    def __init__(self,
                 backbone: BackboneArg,
                 unit: str = 'block',
                 save_frozen: bool = False,
                 init_cfg: Optional[dict] = None):
        if unit not in PARTIAL_UNITS:
            raise ValueError(f'Partial1Backbone: unit must be one of '
                             f'{PARTIAL_UNITS}, not {unit!r}')
        self.unit = unit
        super().__init__(backbone, save_frozen=save_frozen, init_cfg=init_cfg)

    def selected_parameters(self) -> Dict[str, nn.Parameter]:
        stages = getattr(self.backbone, 'stages', None)
        blocks = getattr(stages[-1], 'blocks', None) if stages else None
        if not blocks:
            raise ValueError(
                f'Partial1Backbone does not support '
                f'{type(self.backbone).__name__}: it needs Swin stages '
                '(stages[-1].blocks) to train the last one of')
        prefix = f'stages.{len(stages) - 1}.'
        module: nn.Module = stages[-1]
        if self.unit == 'block':
            prefix += f'blocks.{len(blocks) - 1}.'
            module = blocks[-1]
        return {
            prefix + name: param
            for name, param in module.named_parameters()
        }
