# Copyright (c) mmpetl contributors. All rights reserved.
from torch import nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..output_affine import ScaleShift

#: SSF's sites: after the patch embedding, every norm, and every linear of
#: a block (qkv, proj, fc1, fc2), as dongzelian/SSF places them.
SSF_SITES = ('patch_embed', 'norm', 'qkv', 'proj', 'fc1', 'fc2')


@MODELS.register_module()
class SSFBackbone(AdapterBackbone):
    r"""SSF: Scaling & Shifting your Features.

    `Scaling & Shifting Your Features: A New Baseline for Efficient Model
    Tuning <https://arxiv.org/abs/2210.08823>`_ (Lian et al., NeurIPS 2022).

    .. math::
        y' = \gamma \odot y + \beta

    after every operation of the backbone that has per-channel weights
    (:class:`~mmpetl.models.ScaleShift` in an
    :class:`~mmpetl.models.OutputAffineSite`): the patch embedding, every
    norm (the blocks' and the final one) and every linear of a block (qkv,
    proj, fc1, fc2). ``gamma ~ N(1, 0.02)`` and ``beta ~ N(0, 0.02)``, as
    the reference code initialises them (so, as there, the model at init is
    close to, not equal to, the pre-trained one). Linear, so it folds
    exactly into the preceding linear's rows, convolution's output channels
    or norm's affine (``weight' = gamma weight``, ``bias' = gamma bias +
    beta``).

    Trainable parameters: ``2 C`` per site. ViT-B/16: ``2 x (12 x (768 +
    2304 + 768 + 768 + 3072 + 768) + 768 + 768) = 205,824`` (the tables'
    0.21M). A module without bias (``qkv_bias=False``, a bias-free
    reduction) gets the scale only, so that it still folds exactly (a
    deviation from the paper, which has no such module in its ViT).

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        init_std (float): Std of the init of ``gamma`` (around 1) and
            ``beta`` (around 0). Defaults to 0.02.
        **kwargs: ``sites`` (kinds among :data:`SSF_SITES`; the default is
            those the backbone's row has), ``targets``, ``save_frozen``,
            ``init_cfg`` of :class:`AdapterBackbone`.
    """

    site_form = 'output'
    default_sites = SSF_SITES

    def __init__(self,
                 backbone: BackboneArg,
                 init_std: float = 0.02,
                 **kwargs):
        super().__init__(
            backbone, settings=dict(init_std=init_std), **kwargs)

    def build_adapter(self, site: AttachSite) -> ScaleShift:
        adapter = ScaleShift(site.out_features, site.channel_dim, site.shift)
        nn.init.normal_(adapter.scale, mean=1., std=self.init_std)
        if adapter.shift is not None:
            nn.init.normal_(adapter.shift, std=self.init_std)
        return adapter
