# Copyright (c) mmpetl contributors. All rights reserved.
from mmpetl.registry import MODELS
from ..adapter_backbone import BackboneArg
from .bottleneck import BottleneckAdapterBackbone


@MODELS.register_module()
class HoulsbyAdapterBackbone(BottleneckAdapterBackbone):
    r"""Houlsby adapters: a sequential bottleneck after every block's
    attention and after its MLP.

    `Parameter-Efficient Transfer Learning for NLP
    <https://arxiv.org/abs/1902.00751>`_ (Houlsby et al., ICML 2019), as
    OSU-MLB/PETL_Vision runs it on ViTs (``model/adapter.py``,
    ``model/block.py``, ``ft_attn_mode`` / ``ft_mlp_mode:
    sequential_after``):

    .. math::
        a(h) = h + s \cdot W_{up}\,\mathrm{drop}(\mathrm{ReLU}(
               W_{down} h + b_{down})) + s\,b_{up}

    applied to the output ``h`` of the attention's output projection (site
    kind ``proj``) and of the MLP's last linear (``fc2``), inside the
    residual branches (a :class:`~mmpetl.models.SequentialSite` each).
    Defaults as PETL_Vision: ReLU, dropout 0.1, both projections
    xavier-uniform and biases N(0, 1e-6) (``init='xavier'``), ``s = 1``
    and bottleneck 8 (one point of its searched grids: ``s`` in {0.01, 0.1,
    1, 10}, ``r`` in {4, 8, 16, 32}). Non-linear: it does not fold; merging
    refuses it in one line.

    Shapes: tokens (..., d) -> (..., d). Trainable parameters per block:
    ``2 (2 d r + r + d)``; ViT-B/16 (``d = 768``, 12 blocks, ``r = 8``):
    313,536 (0.31M).

    Deviations:

    - The paper initialises near the identity (small Gaussian weights);
      PETL_Vision's xavier init (default here) starts away from it.
      ``init='lora'`` (up-projection zero) starts at it exactly.
    - The paper's non-linearity is unspecified beyond "non-linear";
      PETL_Vision's ReLU is the default (``act_cfg``).
    - The attention adapter sits after ``proj`` (before the attention's
      output dropout and layer scale); PETL_Vision's after the timm
      attention module (after its output dropout, before layer scale):
      the same in evaluation mode.
    - mmseg's ViT (``nn.MultiheadAttention``, which applies its output
      projection itself) has no ``proj`` site: refused at build in one line
      (``sites=('fc2',)`` gives Pfeiffer's placement).
    - The paper also trains the layer norms; PETL_Vision does not, and
      neither does this wrapper: training them adds LN-tuning's parameters
      (ViT-B/16: ``25 x 2 x 768 = 38,400``, 313,536 -> 351,936).

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        bottleneck (int): ``r``. Defaults to 8.
        scale (float): ``s``. Defaults to 1.
        dropout (float): Defaults to 0.1.
        act_cfg (dict): Defaults to ReLU.
        init (str): ``'xavier'`` (default) or ``'lora'``.
        **kwargs: ``sites`` (default ``('proj', 'fc2')``), ``targets``,
            ``check_input_shape``, ``save_frozen``, ``init_cfg`` of
            :class:`~mmpetl.models.AdapterBackbone`.
    """

    placement = 'sequential'
    method = 'HoulsbyAdapter'
    where = 'after the attention and after the MLP'
    default_sites = ('proj', 'fc2')

    def __init__(self,
                 backbone: BackboneArg,
                 bottleneck: int = 8,
                 scale: float = 1.,
                 dropout: float = 0.1,
                 act_cfg: dict = dict(type='ReLU'),
                 init: str = 'xavier',
                 **kwargs):
        super().__init__(backbone, bottleneck, scale, dropout, act_cfg, init,
                         **kwargs)
