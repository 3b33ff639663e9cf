# Copyright (c) mmpetl contributors. All rights reserved.
from typing import Dict, Optional, Tuple

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
    to fold). The last block is found by structure (:func:`last_unit`):
    Swin's ``stages[-1].blocks[-1]`` (mmseg, mmdet, mmpretrain, V2, Video
    Swin), ConvNeXt's last block, a ViT's last layer (VPT's ``partial-1``
    on ViT, the same definition).

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
        super().__init__(
            backbone,
            save_frozen=save_frozen,
            init_cfg=init_cfg,
            settings=dict(unit=unit))

    def selected_parameters(self) -> Dict[str, nn.Parameter]:
        prefix, module = last_unit(self.backbone, self.unit)
        return {
            prefix + name: param
            for name, param in module.named_parameters()
        }


def last_unit(backbone: nn.Module, unit: str) -> Tuple[str, nn.Module]:
    """``(path prefix, module)`` of the backbone's last block (``unit=
    'block'``) or last stage (``'stage'``): the last of its ``stages`` /
    ``layers`` / ``blocks``, and in a stage of blocks (Swin's ``blocks``,
    ConvNeXt's sequence) its last block."""
    for attr in ('stages', 'layers', 'blocks'):
        seq = getattr(backbone, attr, None)
        if isinstance(seq, (nn.ModuleList, nn.Sequential)) and len(seq):
            break
    else:
        raise ValueError(
            f'Partial1Backbone does not support {type(backbone).__name__}: '
            'it has no stages, layers or blocks to train the last one of')
    prefix, last = f'{attr}.{len(seq) - 1}.', seq[-1]
    blocks = getattr(last, 'blocks', None)
    if blocks is None and isinstance(last, nn.Sequential):
        blocks, name = last, ''
    else:
        name = 'blocks.'
    if blocks is None:  # a plain transformer: its layers are the blocks
        if unit == 'stage':
            raise ValueError(
                f"Partial1Backbone: unit='stage' needs stages; "
                f"{type(backbone).__name__} has a plain sequence of layers "
                "(use unit='block': its last layer)")
        return prefix, last
    if unit == 'stage':
        return prefix, last
    return f'{prefix}{name}{len(blocks) - 1}.', blocks[-1]
