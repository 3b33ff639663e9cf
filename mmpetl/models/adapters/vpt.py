# Copyright (c) mmpetl contributors. All rights reserved.
import math
from functools import partial
from typing import Any, Dict, List, Tuple

import torch
from torch import Tensor, nn

from mmpetl.registry import MODELS
from ..adapter_wrapper import AdapterBackbone, AttachSite, BackboneArg
from ..petl import PETLModule

#: Why VPT is refused on backbones whose layers need more than one token
#: sequence (their attach-site rows have no ``layer`` kind).
UNSUPPORTED = {
    'mmpretrain.BEiTViT': 'its relative position bias is sized to the '
    'class token and the patch grid',
    'mmpretrain.ViTEVA02': 'its RoPE rotates every token after the class '
    'token by its grid position',
    'mmpretrain.ViTSAM': 'its windowed attention reshapes the tokens to '
    'the patch grid',
    'mmpretrain.SwinTransformer': 'its windowed attention reshapes the '
    'tokens to the patch grid',
    'mmpretrain.SwinTransformerV2': 'its windowed attention reshapes the '
    'tokens to the patch grid',
    'mmseg.SwinTransformer': 'its windowed attention reshapes the tokens '
    'to the patch grid',
    'mmdet.SwinTransformer': 'its windowed attention reshapes the tokens '
    'to the patch grid',
    'mmaction.SwinTransformer3D': 'its windowed attention reshapes the '
    'tokens to the patch grid',
    'mmpretrain.ConvNeXt': 'it has no tokens',
}

#: The modes of :class:`VPTBackbone`.
VPT_MODES = ('shallow', 'deep')


class VisualPrompts(PETLModule):
    """Learnable prompt tokens, inserted into a ViT's token sequence before
    its layers and removed after them.

    Layer ``i``'s input ``[extra, patches]`` (``extra``: the class token,
    first) becomes ``[extra, P_i, patches]``; its output is cut back to
    ``[extra, patches]``, so that the backbone's own code between layers and
    its output formatting never see prompts. ``P_i`` is a new prompt
    (after dropout) at the layers that have one (all, deep; the first,
    shallow), and the previous layer's prompt outputs at the others
    (shallow).

    Args:
        num_prompted (int): Number of prompt sets (1 shallow, the number
            of layers deep).
        num_tokens (int): ``N``, prompts per set.
        embed_dims (int): ``d``.
        init_fan_in (int): Fan-in of the patch embedding
            (``3 * patch * patch``): prompts are drawn from
            ``U(-v, v)``, ``v = sqrt(6 / (init_fan_in + d))``.
        num_extra_tokens (int): Tokens before the patches (1: the class
            token), after which prompts are inserted.
        dropout (float): Dropout on the new prompts (per sample).

    Shapes:
        ``embeddings``: (num_prompted, N, d); layer input (B, E + L, d) ->
        (B, E + N + L, d); layer output cut back to (B, E + L, d).
    """

    def __init__(self, num_prompted: int, num_tokens: int, embed_dims: int,
                 init_fan_in: int, num_extra_tokens: int,
                 dropout: float = 0.1):
        super().__init__()
        if num_tokens < 1:
            raise ValueError(f'VPT needs num_tokens >= 1, not {num_tokens}')
        self.num_tokens = num_tokens
        self.num_extra_tokens = num_extra_tokens
        self.embeddings = nn.Parameter(
            torch.empty(num_prompted, num_tokens, embed_dims))
        bound = math.sqrt(6. / (init_fan_in + embed_dims))
        nn.init.uniform_(self.embeddings, -bound, bound)
        self.dropout = nn.Dropout(dropout)
        # The previous layer's prompt outputs (shallow), within one forward.
        self._carried: List[Tensor] = []

    def attach(self, layers: List[nn.Module]) -> None:
        """Insert and remove the prompts around each of ``layers`` (in
        order), with hooks."""
        for index, layer in enumerate(layers):
            layer.register_forward_pre_hook(partial(self._insert, index))
            layer.register_forward_hook(
                partial(self._remove, carry=index < len(layers) - 1
                        and len(self.embeddings) < len(layers)))

    def _insert(self, index: int, layer: nn.Module,
                args: tuple) -> Tuple[Tensor, ...]:
        x, *rest = args
        if index < len(self.embeddings):
            self._carried.clear()
            prompts = self.dropout(self.embeddings[index].expand(
                x.shape[0], -1, -1))
        else:
            prompts = self._carried.pop()
        e = self.num_extra_tokens
        return (torch.cat((x[:, :e], prompts.to(x.dtype), x[:, e:]), dim=1),
                *rest)

    def _remove(self, layer: nn.Module, args: tuple, out: Tensor, *,
                carry: bool) -> Tensor:
        if not isinstance(out, Tensor):
            raise TypeError(f'VPT: {type(layer).__name__} returns '
                            f'{type(out).__name__}, not a token tensor')
        e, n = self.num_extra_tokens, self.num_tokens
        if carry:
            self._carried.append(out[:, e:e + n])
        return torch.cat((out[:, :e], out[:, e + n:]), dim=1)

    def extra_repr(self) -> str:
        return (f'num_tokens={self.num_tokens}, '
                f'sets={len(self.embeddings)}, '
                f'after {self.num_extra_tokens} extra token(s)')


def num_extra_tokens(backbone: nn.Module) -> int:
    """Tokens before the patches: mmpretrain's ``num_extra_tokens``, mmseg's
    ``with_cls_token``, else the class token if any."""
    extra = getattr(backbone, 'num_extra_tokens', None)
    if isinstance(extra, int):
        return extra
    if hasattr(backbone, 'with_cls_token'):
        return int(bool(backbone.with_cls_token))
    return int(getattr(backbone, 'cls_token', None) is not None)


def _patch_fan_in(backbone: nn.Module) -> int:
    """Fan-in of the patch embedding's convolution (``3 * p * p``)."""
    for module in backbone.patch_embed.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return module.in_channels * math.prod(module.kernel_size)
    raise TypeError(f'VPT: {type(backbone).__name__}.patch_embed has no '
                    'convolution to size the prompt init from')


@MODELS.register_module()
class VPTBackbone(AdapterBackbone):
    r"""VPT: Visual Prompt Tuning, shallow or deep.

    `Visual Prompt Tuning <https://arxiv.org/abs/2203.12119>`_ (Jia et al.,
    ECCV 2022), reference code KMnP/vpt (``src/models/vit_prompt/vit.py``):

    .. math::
        [x_0, \_, E_1] = L_1([x_0, P_1, E_0]),\qquad
        [x_i, \_, E_{i+1}] = L_{i+1}([x_i, P_{i+1}, E_i])

    with ``x`` the class token, ``E`` the patch tokens and ``P_i`` ``N``
    learnable prompts (:class:`VisualPrompts`), inserted after the class
    token. Deep: a new ``P_i`` at every layer, replacing the previous
    layer's prompt outputs; shallow: ``P_1`` at the input only, its outputs
    carried from layer to layer. Prompts are removed after every layer, so
    the backbone's own output formatting (class token, feature map,
    averaged feature map; ``out_indices`` at any layer) sees exactly its own
    tokens. Prompts get no positional embedding (as the reference:
    inserted after it). Init as the reference: ``U(-v, v)`` with
    ``v = sqrt(6 / (3 p^2 + d))`` (``p``: patch size); dropout 0.1 on the
    prompts, per sample (the reference's runs; its config default is 0).

    Supported (attach-site kind ``layer``): mmpretrain's ViT (CLIP, DINOv2,
    DeiT3), mmseg's ViT, VideoMAE. Refused at build, in one line saying
    why: backbones whose layers add terms sized to the patch grid (BEiT's
    relative position bias, EVA-02's RoPE) or attend in windows (SAM,
    Swin). Prompts are extra attention inputs at every layer: they do not
    fold (merging refuses the model in one line).

    Shapes: tokens (B, E + L, d) -> each layer sees (B, E + N + L, d).
    Trainable parameters: ``N d`` (shallow), ``n_layers N d`` (deep); ViT-B/16
    (``d = 768``, 12 layers): ``N = 50``: 38,400 / 460,800; the VTAB tables'
    averages over their per-task ``N``: 0.08M / 0.56M.

    Deviations:

    - VideoMAE's patch embedding is a tubelet convolution: ``v`` uses its
      whole fan-in (``3 t p^2``).
    - The prompts are owned by this wrapper (checkpoint key
      ``prompts.embeddings``), one tensor (sets, N, d) for the reference's
      ``prompt_embeddings`` and ``deep_prompt_embeddings``.
    - ``num_tokens`` defaults to 10; the paper picks it per task.

    Args:
        backbone (dict | nn.Module): The stock backbone,
            as a config or built (see :class:`~mmpetl.models.FrozenBackbone`).
        mode (str): ``'shallow'`` or ``'deep'``. Defaults to ``'deep'``.
        num_tokens (int): ``N``. Defaults to 10.
        dropout (float): Dropout on the prompts. Defaults to 0.1.
        **kwargs: ``sites`` (default ``('layer',)``), ``targets``,
            ``check_input_shape``, ``save_frozen``, ``init_cfg`` of
            :class:`~mmpetl.models.AdapterBackbone`.
    """

    site_form = 'module'
    default_sites = ('layer', )
    requires_default_sites = True
    unsupported = UNSUPPORTED
    unsupported_reason = ("it is not in the attach-site table with a 'layer' "
                          'kind')
    alternative = ('so prompt tokens cannot join its sequence; use an '
                   'adapter method (e.g. mmpetl.AdaptFormerBackbone)')

    def __init__(self,
                 backbone: BackboneArg,
                 mode: str = 'deep',
                 num_tokens: int = 10,
                 dropout: float = 0.1,
                 **kwargs):
        if mode not in VPT_MODES:
            raise ValueError(f'VPTBackbone: mode must be one of {VPT_MODES},'
                             f' not {mode!r}')
        super().__init__(
            backbone,
            settings=dict(
                mode=mode, num_tokens=num_tokens, prompt_dropout=dropout),
            **kwargs)

    def build_shared(self, sites: List[AttachSite]) -> None:
        """The prompts of every layer, hooked around the layers."""
        layers = [self.backbone.get_submodule(site.path) for site in sites]
        self.prompts = VisualPrompts(
            len(layers) if self.mode == 'deep' else 1,
            self.num_tokens,
            sites[0].in_features,
            _patch_fan_in(self.backbone),
            num_extra_tokens(self.backbone),
            dropout=self.prompt_dropout)
        self.prompts.attach(layers)

    def build_adapter(self, site: AttachSite) -> None:
        """None: the prompts act at every layer."""
        return None

    def parameter_slices(self) -> Dict[str, List[Tuple[str, Any, nn.Module]]]:
        """Deep: each layer's prompt set, reached through that layer."""
        if self.mode != 'deep':
            return {}
        return {
            'prompts.embeddings': [
                (site.path, index, self.backbone.get_submodule(site.path))
                for index, site in enumerate(self.attach_sites)
            ]
        }

    def merge_blockers(self) -> List[str]:
        """VPT never folds: its prompts are extra inputs of every layer."""
        where = ('at the input, attended by every layer' if self.mode ==
                 'shallow' else 'anew at every layer')
        return [
            f'prompts: VPT-{self.mode} adds {self.num_tokens} prompt tokens '
            f'{where}: extra attention inputs do not fold into the stock '
            'backbone; deploy the adapter checkpoint with its mmpetl config'
        ]
