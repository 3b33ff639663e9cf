# Copyright (c) mmpetl contributors. All rights reserved.
from mmpetl.registry import MODELS
from .bottleneck import BottleneckAdapterBackbone


@MODELS.register_module()
class AdaptFormerBackbone(BottleneckAdapterBackbone):
    r"""AdaptFormer: a bottleneck branch parallel to every block's MLP.

    `AdaptFormer: Adapting Vision Transformers for Scalable Visual
    Recognition <https://arxiv.org/abs/2205.13535>`_ (Chen et al., NeurIPS
    2022), reference code ShoufaChen/AdaptFormer (``models/adapter.py``,
    ``models/custom_modules.py``):

    .. math::
        x' = x + \mathrm{MLP}(\mathrm{LN}(x))
             + s \cdot W_{up}\,\mathrm{drop}(\mathrm{ReLU}(
               W_{down}\,\mathrm{LN}(x) + b_{down})) + s\,b_{up}

    a :class:`~mmpetl.models.adapters.BottleneckAdapter` in a
    :class:`~mmpetl.models.ParallelSite` on the block's FFN module (site
    kind ``mlp``: ViT, DeiT3, CLIP, DINOv2, BEiT, EVA-02, SAM, mmseg ViT,
    VideoMAE, and the Swin families, V2 and Video Swin included). As the
    reference: bottleneck 64 (the paper; its VTAB-1k tables use 8),
    ``s = 0.1``, dropout 0.1 after the ReLU, ``W_down`` kaiming-uniform
    (``a = sqrt(5)``), ``W_up`` and both biases zero (``init='lora'``), so
    the model starts as the pre-trained one. Non-linear and parallel to
    the MLP: it does not fold; merging refuses it in one line.

    Shapes: tokens (..., d) -> (..., d). Trainable parameters per block:
    ``2 d r + r + d``; ViT-B/16 (``d = 768``, 12 blocks): ``r = 64``:
    1,189,632 (1.19M); ``r = 8``: 156,768 (the VTAB tables' 0.16M).

    Deviations:

    - The branch reads the FFN's input, ``LN(x)`` (the paper's Eq. 3 and
      Fig. 2), where the reference code (with
      ``ffn_adapter_layernorm_option='none'``) feeds it the block's
      residual stream ``x`` before ``norm2``; on Swin V2 (post-norm) the
      FFN's input is the residual stream itself, so both agree there.
    - The branch is added to the FFN module's output, before the block's
      layer scale / drop path where the backbone applies them after the
      FFN (DINOv2, BEiT, EVA-02, VideoMAE); the reference ViT has neither.

    Args:
        backbone (dict): Config of the stock backbone.
        bottleneck (int): ``r``. Defaults to 64.
        scale (float): ``s``. Defaults to 0.1.
        dropout (float): Defaults to 0.1.
        act_cfg (dict): Defaults to ReLU.
        init (str): ``'lora'`` (default) or ``'xavier'``.
        **kwargs: ``sites`` (default ``('mlp',)``), ``targets``,
            ``check_input_shape``, ``save_frozen``, ``init_cfg`` of
            :class:`~mmpetl.models.AdapterBackbone`.
    """

    placement = 'parallel'
    method = 'AdaptFormer'
    where = 'parallel to the MLP'
    default_sites = ('mlp', )

    def __init__(self,
                 backbone: dict,
                 bottleneck: int = 64,
                 scale: float = 0.1,
                 dropout: float = 0.1,
                 act_cfg: dict = dict(type='ReLU'),
                 init: str = 'lora',
                 **kwargs):
        super().__init__(backbone, bottleneck, scale, dropout, act_cfg, init,
                         **kwargs)
