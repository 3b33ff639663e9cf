# Copyright (c) mmpetl contributors. All rights reserved.
import re
from typing import Dict, List

from torch import nn

from mmpetl.registry import MODELS
from mmpetl.utils.errors import UnknownNameError
from ..adapter_backbone import AttachSite, BackboneArg
from ..attach_sites import site_patterns
from ..nonfoldable import NonFoldableSite, StreamParallelSite
from .bottleneck import BottleneckAdapter, BottleneckAdapterBackbone

#: What AdaptFormer's branch reads: ``'stream'``, the block's residual
#: stream ``x`` before the FFN's norm (the reference code); ``'norm'``, the
#: FFN's input ``LN(x)`` (the paper's Eq. 3 and Fig. 2).
ADAPTER_INPUTS = ('stream', 'norm')


@MODELS.register_module()
class AdaptFormerBackbone(BottleneckAdapterBackbone):
    r"""AdaptFormer: a bottleneck branch parallel to every block's MLP.

    `AdaptFormer: Adapting Vision Transformers for Scalable Visual
    Recognition <https://arxiv.org/abs/2205.13535>`_ (Chen et al., NeurIPS
    2022), reference code ShoufaChen/AdaptFormer (``models/adapter.py``,
    ``models/custom_modules.py``, ``main_image.py``). With
    ``adapter_input='stream'`` (default, the reference code: its block calls
    ``adaptmlp(x)`` on the stream before ``norm2``, with
    ``ffn_adapter_layernorm_option='none'``):

    .. math::
        x' = x + \mathrm{MLP}(\mathrm{LN}(x))
             + s \cdot W_{up}\,\mathrm{drop}(\mathrm{ReLU}(
               W_{down}\,x + b_{down})) + s\,b_{up}

    and with ``adapter_input='norm'`` (the paper's Eq. 3 and Fig. 2) the
    branch reads ``LN(x)``, the FFN's input, instead of ``x``.

    A :class:`~mmpetl.models.adapters.BottleneckAdapter` beside the block's
    FFN module (site kind ``mlp``: ViT, DeiT3, CLIP, DINOv2, BEiT, EVA-02,
    SAM, mmseg ViT, VideoMAE, and the Swin families, V2 and Video Swin
    included): in a :class:`~mmpetl.models.StreamParallelSite` reading the
    input of the block's site kind ``stream`` (the norm in front of the
    FFN; in Swin V2, post-norm, the FFN itself, so both inputs agree there),
    or in a :class:`~mmpetl.models.ParallelSite` on the FFN's input. As the
    reference: bottleneck 64 (the paper; its VTAB-1k tables use 8),
    ``s = 0.1``, dropout 0.1 after the ReLU, ``W_down`` kaiming-uniform
    (``a = sqrt(5)``), ``W_up`` and both biases zero (``init='lora'``), so
    the model starts as the pre-trained one. Non-linear and parallel to
    the MLP: it does not fold; merging refuses it in one line.

    Shapes: tokens (..., d) -> (..., d). Trainable parameters per block:
    ``2 d r + r + d`` (either input); ViT-B/16 (``d = 768``, 12 blocks):
    ``r = 64``: 1,189,632 (1.19M); ``r = 8``: 156,768 (the VTAB tables'
    0.16M).

    Deviations:

    - ``adapter_input='norm'`` is the paper's wiring, not the reference
      code's (the default).
    - The branch is added to the FFN module's output, before the block's
      layer scale / drop path where the backbone applies them after the
      FFN (DINOv2, BEiT, EVA-02, VideoMAE); the reference ViT has neither,
      and adds its branch after the FFN's drop path.

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        bottleneck (int): ``r``. Defaults to 64.
        scale (float): ``s``. Defaults to 0.1.
        dropout (float): Defaults to 0.1.
        act_cfg (dict): Defaults to ReLU.
        init (str): ``'lora'`` (default) or ``'xavier'``.
        adapter_input (str): One of :data:`ADAPTER_INPUTS`. Defaults to
            ``'stream'``.
        **kwargs: ``sites`` (default ``('mlp',)``), ``targets`` (with
            ``'stream'``, a ``stream`` pattern too), ``check_input_shape``,
            ``save_frozen``, ``init_cfg`` of
            :class:`~mmpetl.models.AdapterBackbone`.
    """

    placement = 'parallel'
    method = 'AdaptFormer'
    where = 'parallel to the MLP'
    default_sites = ('mlp', )

    def __init__(self,
                 backbone: BackboneArg,
                 bottleneck: int = 64,
                 scale: float = 0.1,
                 dropout: float = 0.1,
                 act_cfg: dict = dict(type='ReLU'),
                 init: str = 'lora',
                 adapter_input: str = 'stream',
                 **kwargs):
        if adapter_input not in ADAPTER_INPUTS:
            raise ValueError(f'AdaptFormerBackbone adapter_input must be one '
                             f'of {ADAPTER_INPUTS}, not {adapter_input!r}')
        super().__init__(backbone, bottleneck, scale, dropout, act_cfg, init,
                         settings=dict(adapter_input=adapter_input), **kwargs)

    def build_shared(self, sites: List[AttachSite]) -> None:
        """With ``adapter_input='stream'``: the module whose input is each
        site's residual stream (no module is built)."""
        if self.adapter_input == 'stream':
            self.stream_modules = self._find_stream_modules(sites)

    def _find_stream_modules(self,
                             sites: List[AttachSite]) -> Dict[str, nn.Module]:
        """Site path -> the module of the site kind ``stream`` in the same
        block (the same parent path), whose input is the stream."""
        patterns = self.targets or site_patterns(self.backbone)
        if 'stream' not in patterns:
            raise UnknownNameError(
                f"AdaptFormerBackbone: adapter_input='stream' needs the site "
                f"kind 'stream' (the module whose input is the residual "
                f'stream the FFN reads), which '
                f'{type(self.backbone).__name__} has not; add it to targets= '
                "or use adapter_input='norm'")
        pattern = re.compile(patterns['stream'])
        blocks = {
            path.rpartition('.')[0]: module
            for path, module in self.backbone.named_modules()
            if pattern.fullmatch(path)
        }
        missing = [s.path for s in sites
                   if s.path.rpartition('.')[0] not in blocks]
        if missing:
            raise ValueError(
                f"AdaptFormerBackbone: no 'stream' module beside "
                f'{missing[0]!r} (in its block); fix the stream pattern or '
                "use adapter_input='norm'")
        return {s.path: blocks[s.path.rpartition('.')[0]] for s in sites}

    def wrap_site(self, site: AttachSite, module: nn.Module,
                  adapter: BottleneckAdapter) -> NonFoldableSite:
        if self.adapter_input == 'norm':
            return super().wrap_site(site, module, adapter)
        return StreamParallelSite(module, adapter,
                                  self.nonfoldable_reason(site),
                                  self.stream_modules[site.path])
