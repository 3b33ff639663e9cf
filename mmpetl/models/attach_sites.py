# Copyright (c) mmpetl contributors. All rights reserved.
"""Where adapters attach in each supported backbone.

One table for all methods: for every backbone class, a site spec per *site
kind*. An adapter transforms the input of a module, and folds into a *fold
target* of that module: a weight parameter ``W`` (out, in) that the module
applies to that input, and the parameters that take the folded bias (its
*bias sink*) (:class:`~mmpetl.models.adapted_linear.FoldTarget`).

- A plain regex names ``nn.Linear`` layers whose ``forward`` the block calls:
  the adapter wraps the linear itself (:class:`AdaptedLinear`), so whatever
  the block does before it (norms, padding of Swin and SAM windows) it sees
  exactly what the linear sees.
- A :class:`SiteSpec` names a module that applies the weight itself
  (``F.linear(x, qkv.weight, cat(q_bias, 0, v_bias))``, a fused
  ``in_proj_weight``): the adapter wraps that module
  (:class:`AdaptedModule`).

Whatever the spec, the wrapper proves on the first training forward that
every adapter runs and folds exactly (:mod:`mmpetl.models.site_check`).

A named group ``stage`` in the pattern splits a site kind into one *share
group* per stage (ARC shares its projection within a share group, and Swin's
and ConvNeXt's stages have different widths).
"""
import logging
import re
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, Union

from mmengine.logging import print_log
from torch import nn

from ..utils.errors import UnknownNameError
from .adapted_linear import FoldTarget, find_parameter

#: The site kinds used when a wrapper is given no ``sites``: those of them
#: that the backbone's table row has.
DEFAULT_SITES = ('attn', 'ffn')


@dataclass(frozen=True)
class SiteSpec:
    """One site kind of the table (or of ``targets``): the modules it names
    and, for the input-affine form, where their adapter folds. Only
    ``module`` applies to the other forms.

    Attributes:
        module (str): Regex of the module paths (whole-path match; a named
            group ``stage`` makes per-stage share groups).
        linear (str): Path, inside the module, of the ``nn.Linear`` whose
            weight the adapter folds into (its bias is the default sink).
            ``''``: the module itself.
        bias_sink (str | tuple, optional): Paths, inside the module, of the
            parameters that hold the weight's bias, one per equal chunk of
            its outputs, in order; ``None`` for a chunk the module's output
            is invariant to (a folded bias there is dropped). Missing
            parameters fall back to the linear's own bias.
        weight (str, optional): Path of the weight parameter (out, in)
            inside the module, when it is no linear's
            (``'in_proj_weight'``). Overrides ``linear``. ``'weight'`` on an
            ``nn.Linear`` (weight-delta form): a linear whose block reads
            its weight (``F.linear(x, qkv.weight, ...)``) rather than
            calling it.
        inputs (tuple[str]): Forward arguments of the module to adapt,
            e.g. ``('query', 'key', 'value')``. Empty: the first.
        shift (bool): Whether the adapters may have a shift ``m``. False
            where no bias can take ``W m`` exactly (Swin V2's cosine
            attention is not invariant to a key bias); the method then
            builds its adapter without biases.
        mergeable (bool): False for a site that cannot fold (a paper's
            reference placement, e.g. on the residual stream): the adapter
            trains and runs, and merging refuses the model.
    """
    module: str
    linear: str = ''
    bias_sink: Optional[Union[str, Tuple[Optional[str], ...]]] = None
    weight: Optional[str] = None
    inputs: Tuple[str, ...] = ()
    shift: bool = True
    mergeable: bool = True

    def fold_target(self) -> Optional[FoldTarget]:
        if not self.mergeable:
            return None
        weight = self.weight or '.'.join(
            p for p in (self.linear, 'weight') if p)
        sink = self.bias_sink
        sink = (sink, ) if isinstance(sink, str) else tuple(sink or ())
        return FoldTarget(weight, sink)


#: Every norm layer whose name ends in ``norm``/``ln`` (+ digits),
#: ``fc_norm`` or ``pre_norm``; disabled norms (``nn.Identity``) are skipped.
_NORMS = r'(?:.*\.)?(?:norm|ln|fc_norm|pre_norm)\d*'
#: Swin's patch-merging norms (``downsample.norm``): their own kind
#: ``merging_norm``, out of ``norm`` (SSF's reference never applies its
#: scale and shift there).
_MERGING_NORMS = r'(?:.*\.)?downsample\.norm'
_SWIN_NORMS = r'(?!(?:.*\.)?downsample\.)' + _NORMS

_SWIN_BLOCK = r'stages\.(?P<stage>\d+)\.blocks\.\d+'
_SWIN_SITES = dict(
    attn=_SWIN_BLOCK + r'\.attn\.w_msa\.qkv',
    ffn=_SWIN_BLOCK + r'\.ffn\.layers\.0\.0',
    qkv=_SWIN_BLOCK + r'\.attn\.w_msa\.qkv',
    proj=_SWIN_BLOCK + r'\.attn\.w_msa\.proj',
    fc1=_SWIN_BLOCK + r'\.ffn\.layers\.0\.0',
    fc2=_SWIN_BLOCK + r'\.ffn\.layers\.1',
    mlp=_SWIN_BLOCK + r'\.ffn',
    stream=_SWIN_BLOCK + r'\.norm2',
    block=_SWIN_BLOCK,
    # The drop path ending each residual branch (its output is what the
    # block adds to the stream): LoRand's places.
    attn_branch=_SWIN_BLOCK + r'\.attn\.drop',
    ffn_branch=_SWIN_BLOCK + r'\.ffn\.dropout_layer',
    norm=_SWIN_NORMS,
    merging_norm=_MERGING_NORMS,
    patch_embed=r'patch_embed\.projection')
# q and v biases live beside a bias-free qkv linear (k bias: a constant
# zero); a bias folded into k changes q.k by a constant per query, which the
# softmax over keys ignores, so it is dropped (tested per layout).
_QV_BIAS = ('q_bias', None, 'v_bias')

_VIT_LAYER = r'layers\.\d+'
# mmpretrain's attention and FFN end with their drop path (after the layer
# scale), before the layer's residual add.
_VIT_BRANCHES = dict(
    attn_branch=_VIT_LAYER + r'\.attn\.out_drop',
    ffn_branch=_VIT_LAYER + r'\.ffn\.dropout_layer')
# mmcv / mmpretrain FFN: layers.0.0 is fc1 (with its activation), layers.1
# fc2; DINOv2's SwiGLU FFN: w12 (fused gate and value), w3.
_VIT_FFN = dict(
    fc1=_VIT_LAYER + r'\.ffn\.(?:layers\.0\.0|w12)',
    fc2=_VIT_LAYER + r'\.ffn\.(?:layers\.1|w3)',
    mlp=_VIT_LAYER + r'\.ffn',
    stream=_VIT_LAYER + r'\.ln2',
    norm=_NORMS,
    patch_embed=r'patch_embed\.projection')

#: ``'<package>.<ClassName>'`` -> {site kind: module path pattern, or a
#: :class:`SiteSpec`}. Subclasses are found through their MRO.
#:
#: Kinds: ``attn`` / ``ffn`` are the inputs of the attention's and the FFN's
#: first linear map (input-affine adapters: RepAdapter, ARC); ``qkv``,
#: ``proj``, ``fc1``, ``fc2``, ``norm`` and ``patch_embed`` name the modules
#: whose output or weight a method changes (SSF, LoRA, FacT; the sequential
#: adapters after ``proj`` and ``fc2``). ``mlp`` is a block's whole FFN
#: (parallel branches: AdaptFormer), ``stream`` the module whose input is
#: the residual stream that block's FFN reads (the norm in front of the FFN;
#: the FFN itself in a post-norm block: AdaptFormer's reference input),
#: ``attention`` a ViT block's whole
#: attention on the image's token sequence (Convpass; not SAM's windows,
#: not video), ``block`` a whole pre-norm Swin block (Mona) and ``layer`` a
#: whole transformer layer
#: of a backbone that runs its layers on one token sequence with the class
#: token first and no positional terms inside the layers (prompts: VPT; not
#: BEiT's relative position bias, EVA-02's RoPE, windowed attention). A
#: module that
#: applies its weight itself (``F.linear(x, qkv.weight, ...)`` in BEiT,
#: Swin V2 and VideoMAE attention, ``nn.MultiheadAttention``) is named by a
#: :class:`SiteSpec` for ``attn`` (input-affine: the module and its bias
#: sink) and for ``qkv`` (a weight delta: the linear whose weight the
#: module reads, ``weight='weight'``, or the module and ``in_proj_weight``);
#: the output-affine and module-wide forms do not take it.
ATTACH_SITES: Dict[str, Dict[str, Union[str, SiteSpec]]] = {
    # + DeiT3, CLIP (pre-norm), DINOv2 (layer scale; SwiGLU FFN: w12).
    'mmpretrain.VisionTransformer':
    dict(
        attn=_VIT_LAYER + r'\.attn\.qkv',
        ffn=_VIT_LAYER + r'\.ffn\.(?:layers\.0\.0|w12)',
        qkv=_VIT_LAYER + r'\.attn\.qkv',
        proj=_VIT_LAYER + r'\.attn\.proj',
        layer=_VIT_LAYER,
        attention=_VIT_LAYER + r'\.attn',
        **_VIT_BRANCHES,
        **_VIT_FFN),
    # DeiT3 (mmpretrain 1.2) applies each layer's ln1 before the FFN too
    # and never runs ln2: no site on ln2.
    'mmpretrain.DeiT3':
    dict(
        attn=_VIT_LAYER + r'\.attn\.qkv',
        ffn=_VIT_LAYER + r'\.ffn\.layers\.0\.0',
        qkv=_VIT_LAYER + r'\.attn\.qkv',
        proj=_VIT_LAYER + r'\.attn\.proj',
        layer=_VIT_LAYER,
        attention=_VIT_LAYER + r'\.attn',
        **_VIT_BRANCHES,
        **dict(_VIT_FFN, norm=r'(?:layers\.\d+\.)?ln1|ln2',
               stream=_VIT_LAYER + r'\.ln1')),
    # BEiT / BEiT v2: with bias='qv_bias' (default) the attention computes
    # F.linear(x, qkv.weight, cat(q_bias, 0, v_bias)); relative position
    # bias does not involve k. Other bias modes use qkv.bias.
    'mmpretrain.BEiTViT':
    dict(
        attn=SiteSpec(
            module=_VIT_LAYER + r'\.attn', linear='qkv', bias_sink=_QV_BIAS),
        qkv=SiteSpec(module=_VIT_LAYER + r'\.attn\.qkv',
                            weight='weight'),
        ffn=_VIT_LAYER + r'\.ffn\.layers\.0\.0',
        proj=_VIT_LAYER + r'\.attn\.proj',
        attention=_VIT_LAYER + r'\.attn',
        **_VIT_FFN),
    # EVA-02: qkv with its own full bias (RoPE after it: a k bias would not
    # be droppable, but none is dropped); SwiGLU FFN: the fused w12.
    'mmpretrain.ViTEVA02':
    dict(
        attn=_VIT_LAYER + r'\.attn\.qkv',
        ffn=_VIT_LAYER + r'\.mlp\.w12',
        qkv=_VIT_LAYER + r'\.attn\.qkv',
        proj=_VIT_LAYER + r'\.attn\.proj',
        fc1=_VIT_LAYER + r'\.mlp\.w12',
        fc2=_VIT_LAYER + r'\.mlp\.w3',
        mlp=_VIT_LAYER + r'\.mlp',
        stream=_VIT_LAYER + r'\.norm2',
        attention=_VIT_LAYER + r'\.attn',
        norm=_NORMS,
        patch_embed=r'patch_embed\.projection'),
    'mmpretrain.SwinTransformer': _SWIN_SITES,
    # Swin V2: post-norm (the attention and FFN see the residual stream, the
    # attention after window padding); cosine attention normalises k, so a k
    # bias changes the output: attention sites get adapters without shift.
    'mmpretrain.SwinTransformerV2':
    dict(
        attn=SiteSpec(
            module=_SWIN_BLOCK + r'\.attn\.w_msa',
            linear='qkv',
            shift=False),
        qkv=SiteSpec(
            module=_SWIN_BLOCK + r'\.attn\.w_msa\.qkv', weight='weight'),
        stream=_SWIN_BLOCK + r'\.ffn',
        **{k: v for k, v in _SWIN_SITES.items()
           if k not in ('attn', 'qkv', 'block', 'stream', 'attn_branch',
                        'ffn_branch')}),
    # SAM: windows are padded after the norm, before the attention: qkv
    # sees the padded tokens; decomposed rel-pos terms use q (bias folded
    # into qkv.bias exactly).
    'mmpretrain.ViTSAM':
    dict(
        attn=_VIT_LAYER + r'\.attn\.qkv',
        ffn=_VIT_LAYER + r'\.ffn\.layers\.0\.0',
        qkv=_VIT_LAYER + r'\.attn\.qkv',
        proj=_VIT_LAYER + r'\.attn\.proj',
        **_VIT_FFN),
    # ConvNeXt: no attention; the FFN site is the first pointwise linear
    # (linear_pw_conv=True, the default). The RepAdapter reference also
    # adapts the depthwise conv's input, which cannot fold into a depthwise
    # conv (a dense channel mix in front of it): not offered.
    'mmpretrain.ConvNeXt':
    dict(
        ffn=r'stages\.(?P<stage>\d+)\.\d+\.pointwise_conv1',
        fc1=r'stages\.(?P<stage>\d+)\.\d+\.pointwise_conv1',
        fc2=r'stages\.(?P<stage>\d+)\.\d+\.pointwise_conv2'),
    'mmseg.SwinTransformer': _SWIN_SITES,
    'mmdet.SwinTransformer': _SWIN_SITES,
    # mmseg ViT: mmcv's MultiheadAttention adds its own residual (identity)
    # and calls nn.MultiheadAttention(query, key, value) with one tensor:
    # the adapter acts on those three inputs and folds into the fused
    # in_proj_weight / in_proj_bias.
    'mmseg.VisionTransformer':
    dict(
        attn=SiteSpec(
            module=_VIT_LAYER + r'\.attn\.attn',
            weight='in_proj_weight',
            bias_sink='in_proj_bias',
            inputs=('query', 'key', 'value')),
        qkv=SiteSpec(
            module=_VIT_LAYER + r'\.attn\.attn', weight='in_proj_weight'),
        ffn=_VIT_LAYER + r'\.ffn\.layers\.0\.0',
        layer=_VIT_LAYER,
        attention=_VIT_LAYER + r'\.attn',
        attn_branch=_VIT_LAYER + r'\.attn\.dropout_layer',
        ffn_branch=_VIT_LAYER + r'\.ffn\.dropout_layer',
        **_VIT_FFN),
    # VideoMAE ViT (vit_mae.py): with qkv_bias=True, q and v biases are the
    # attention's q_bias / v_bias and the k bias is a constant zero.
    'mmaction.VisionTransformer':
    dict(
        attn=SiteSpec(
            module=r'blocks\.\d+\.attn', linear='qkv', bias_sink=_QV_BIAS),
        qkv=SiteSpec(module=r'blocks\.\d+\.attn\.qkv',
                            weight='weight'),
        ffn=r'blocks\.\d+\.mlp\.layers\.0\.0',
        proj=r'blocks\.\d+\.attn\.proj',
        fc1=r'blocks\.\d+\.mlp\.layers\.0\.0',
        fc2=r'blocks\.\d+\.mlp\.layers\.1',
        mlp=r'blocks\.\d+\.mlp',
        stream=r'blocks\.\d+\.norm2',
        layer=r'blocks\.\d+',
        norm=_NORMS,
        patch_embed=r'patch_embed\.projection'),
    # Video Swin (swin.py): windows are padded before the attention, so the
    # qkv adapter sees the padded tokens exactly as qkv does.
    'mmaction.SwinTransformer3D':
    dict(
        attn=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.attn\.qkv',
        ffn=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.mlp\.fc1',
        qkv=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.attn\.qkv',
        proj=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.attn\.proj',
        fc1=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.mlp\.fc1',
        fc2=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.mlp\.fc2',
        mlp=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.mlp',
        stream=r'layers\.(?P<stage>\d+)\.blocks\.\d+\.norm2',
        norm=_SWIN_NORMS,
        merging_norm=_MERGING_NORMS,
        patch_embed=r'patch_embed\.proj'),
}


@dataclass(frozen=True)
class AttachSite:
    """One adapter site of a backbone.

    Attributes:
        path (str): Module path, inside the backbone, of the module whose
            input the adapter transforms (the linear itself, usually).
        kind (str): Site kind, e.g. ``'attn'`` or ``'ffn'``.
        share_group (str): Name of the group of sites that share parameters
            (``kind``, or ``f'{kind}_stage{i}'``).
        in_features (int): Input width, the adapter's width.
        fold_target (FoldTarget, optional): Input form: the weight and
            bias sink the adapter folds into; None at an input site that
            cannot fold. Delta form: the weight a module applies itself
            (``fold_target.weight``: ``'weight'`` of a linear its block
            reads, ``'in_proj_weight'``), None for a linear the block
            calls. Always None for the other forms, whose site modules fold
            into their own module. Whether a site folds is
            its module's answer
            (:meth:`~mmpetl.models.AdaptedSite.not_mergeable_reason`).
        inputs (tuple[str]): See :class:`SiteSpec`.
        shift (bool): Whether the adapter may have a shift. False where
            the fold target has no bias to take it (a bias-free linear:
            ``qkv_bias=False``, Swin's patch-merging reduction): the method
            builds its adapter without one, so the site still folds
            exactly.
        linear (bool): Whether the module is an ``nn.Linear`` whose own
            weight and bias are the fold target (an :class:`AdaptedLinear`).
        form (str): The fold form the site was found for: ``'input'``
            (input-affine), ``'output'`` (output-affine: the module's output
            channels), ``'delta'`` (a weight delta of a linear) or
            ``'module'`` (a whole module, for methods that do not fold).
        out_features (int, optional): Output channels of the module
            (``'output'``, ``'delta'`` and ``'module'`` forms).
        channel_dim (int): The output's channel dimension (``'output'``
            form): -1, or 1 for convolutions, batch norms and
            channel-first layer norms.
    """
    path: str
    kind: str
    share_group: str
    in_features: int
    fold_target: Optional[FoldTarget]
    inputs: Tuple[str, ...] = ()
    shift: bool = True
    linear: bool = False
    form: str = 'input'
    out_features: Optional[int] = None
    channel_dim: int = -1


def _table_key(cls: type) -> str:
    return f"{cls.__module__.split('.')[0]}.{cls.__name__}"


def site_patterns(backbone: nn.Module,
                  table: Optional[Dict[str, dict]] = None,
                  argument: str = 'targets') -> dict:
    """The patterns of ``backbone``'s class (or a base class) in ``table``
    (default :data:`ATTACH_SITES`); ``argument`` names the wrapper argument
    that replaces the table, for the error message."""
    table = ATTACH_SITES if table is None else table
    for cls in type(backbone).__mro__:
        if _table_key(cls) in table:
            return table[_table_key(cls)]
    raise UnknownNameError(
        f'no attach sites are known for {_table_key(type(backbone))}; known: '
        f'{sorted(table)}. Pass `{argument}=dict(kind=regex)` to the '
        'wrapper to name the modules yourself.')


def _input_width(module: nn.Module) -> Optional[int]:
    """Input width of a module without fold target (non-mergeable site)."""
    for name in ('in_features', 'embed_dims', 'in_channels'):
        if isinstance(getattr(module, name, None), int):
            return getattr(module, name)
    shape = getattr(module, 'normalized_shape', None)
    return shape[-1] if shape else None


def _make_site(path: str, kind: str, group: str, module: nn.Module,
               spec: SiteSpec) -> AttachSite:
    """An input-affine site."""
    target = spec.fold_target()
    if target is None:
        width = _input_width(module)
        if width is None:
            raise TypeError(f'cannot tell the input width of non-mergeable '
                            f'site {path!r} ({type(module).__name__})')
        return AttachSite(path, kind, group, width, None, spec.inputs,
                          spec.shift)
    weight = find_parameter(module, target.weight)
    if weight is None or weight.dim() != 2:
        what = (f'has no weight parameter {target.weight!r}'
                if weight is None else
                f'weight {target.weight!r} has shape {tuple(weight.shape)}')
        raise TypeError(
            f'attach site {path!r} ({kind}): {type(module).__name__} {what},'
            ' not an (out, in) linear map; name a module that applies one: '
            "dict(module=regex, linear='path of its nn.Linear') or "
            "weight='parameter path'")
    linear = (isinstance(module, nn.Linear) and target.weight == 'weight'
              and not target.bias_sink and not spec.inputs)
    # No bias to take W m (qkv_bias=False): a shift-free adapter folds.
    shift = spec.shift and target.sink_paths(module) is not None
    return AttachSite(path, kind, group, weight.shape[1], target, spec.inputs,
                      shift, linear)


#: Modules whose output channels are dim 1 of their output.
_CHANNEL_FIRST = (nn.modules.conv._ConvNd, nn.modules.batchnorm._NormBase,
                  nn.GroupNorm)


def _make_output_site(path: str, kind: str, group: str,
                      module: nn.Module) -> AttachSite:
    """An output-affine site: a module whose output channel ``o`` is
    ``weight[o] * (...) + bias[o]`` (a linear's row, a convolution's output
    channel, a norm's affine)."""
    weight = getattr(module, 'weight', None)
    if not isinstance(weight, nn.Parameter) or weight.dim() == 0 or (
            isinstance(module, nn.LayerNorm) and weight.dim() != 1):
        raise TypeError(
            f'site {path!r} ({kind}): {type(module).__name__} has no '
            'per-channel weight to fold a scale into (a norm without '
            'elementwise affine?); leave this kind out of sites=')
    channel_first = isinstance(module, _CHANNEL_FIRST) or getattr(
        module, 'data_format', None) == 'channel_first'
    bias = getattr(module, 'bias', None)
    width = getattr(module, 'in_features', getattr(module, 'in_channels',
                                                   weight.shape[0]))
    return AttachSite(
        path, kind, group, width, None,
        shift=isinstance(bias, nn.Parameter),
        form='output',
        out_features=weight.shape[0],
        channel_dim=1 if channel_first else -1)


def _make_delta_site(path: str, kind: str, group: str, module: nn.Module,
                     spec: SiteSpec) -> AttachSite:
    """A weight-delta site: an ``nn.Linear`` whose forward its block
    calls, or (a spec naming ``linear`` / ``weight``) a module that applies
    that weight itself (``fold_target.weight`` is its path; ``linear``
    False)."""
    if _applies_weight(spec):
        target = spec.fold_target()
        weight = find_parameter(module, target.weight)
        if weight is None or weight.dim() != 2:
            raise TypeError(f'site {path!r} ({kind}): '
                            f'{type(module).__name__} has no (out, in) '
                            f'weight {target.weight!r}')
        return AttachSite(
            path, kind, group, weight.shape[1], target, form='delta',
            out_features=weight.shape[0])
    if not isinstance(module, nn.Linear):
        raise TypeError(
            f'site {path!r} ({kind}): a weight delta needs an nn.Linear, '
            f'not {type(module).__name__}')
    return AttachSite(
        path, kind, group, module.in_features, None,
        shift=module.bias is not None, linear=True, form='delta',
        out_features=module.out_features)


def _output_width(module: nn.Module) -> Optional[int]:
    """Output width of a module, from its config attributes."""
    for name in ('out_features', 'embed_dims', 'out_channels'):
        if isinstance(getattr(module, name, None), int):
            return getattr(module, name)
    return None


def _make_module_site(path: str, kind: str, group: str, module: nn.Module,
                      parent: Optional[nn.Module] = None) -> AttachSite:
    """A site on a whole module, for the methods that do not fold (a branch
    beside it, an adapter after it). Its widths come from its config
    attributes (``in_features`` / ``embed_dims`` / ``in_channels``, and
    ``out_features`` / ``embed_dims`` / ``out_channels``), else from its
    first and last ``nn.Linear`` (a timm-style MLP, a transformer block);
    the output width is the input width when nothing gives it. A module
    with no width of its own (a drop path) takes its ``parent``'s (the
    module that holds it)."""
    if parent is not None and _input_width(module) is None and not any(
            isinstance(m, nn.Linear) for m in module.modules()):
        site = _make_module_site(path, kind, group, parent)
        return AttachSite(path, kind, group, site.out_features, None,
                          form='module', out_features=site.out_features)
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    width = _input_width(module) or (linears[0].in_features
                                     if linears else None)
    if width is None:
        raise TypeError(
            f'site {path!r} ({kind}): cannot tell the width of '
            f'{type(module).__name__} (no in_features, embed_dims, '
            'in_channels or linear); name another module with targets=')
    out = _output_width(module) or (linears[-1].out_features
                                    if linears else width)
    return AttachSite(
        path, kind, group, width, None, form='module', out_features=out)


def _applies_weight(spec: Union[str, SiteSpec]) -> bool:
    """Whether a table spec names a module that applies a weight itself
    (its ``linear`` / ``weight``), rather than the module to adapt."""
    return isinstance(spec, SiteSpec) and bool(spec.linear
                                                      or spec.weight)


def _takes_form(spec: Union[str, SiteSpec], form: str) -> bool:
    """Whether a site kind's spec can take ``form``: a module that applies
    a weight itself takes an input-affine adapter or a weight delta on that
    weight, not an output-affine one or a module-wide method."""
    return form in ('input', 'delta') or not _applies_weight(spec)


#: The fold forms a site is found for (``'module'``: a whole module, for
#: the methods that do not fold).
SITE_FORMS = ('input', 'output', 'delta', 'module')

def find_attach_sites(backbone: nn.Module,
                      sites: Optional[Sequence[str]] = None,
                      targets: Optional[Dict[str, str]] = None,
                      form: str = 'input',
                      default_sites: Sequence[str] = DEFAULT_SITES,
                      method: str = 'this method') -> List[AttachSite]:
    """List the sites of ``backbone`` for one fold form.

    Args:
        backbone (nn.Module): The stock backbone.
        sites (Sequence[str], optional): Site kinds to use from the table,
            e.g. ``('attn', 'ffn')`` or ``('attn',)``. None: those of
            ``default_sites`` that the backbone's row has.
        targets (dict, optional): ``{kind: spec}`` that replaces the table
            (for backbones it does not know). A spec is a regex of module
            paths, or (input form) a :class:`SiteSpec` or the dict of
            its fields. Patterns must match whole module paths.
        form (str): One of :data:`SITE_FORMS`.
        default_sites (Sequence[str]): The method's default kinds.
        method (str): The method's name, for error messages.

    Returns:
        list[AttachSite]: In module order.

    Raises:
        KeyError: A kind the backbone's row lacks (one line naming it).
        ValueError, TypeError: A kind that matches nothing, or a module
            that cannot take this form.
    """
    if form not in SITE_FORMS:
        raise ValueError(f'form must be one of {SITE_FORMS}, not {form!r}')
    if targets is None:
        table = site_patterns(backbone)
        explicit = sites is not None
        if sites is None:
            sites = [kind for kind in default_sites
                     if kind in table and _takes_form(table[kind], form)]
            left_out = [k for k in default_sites if k not in sites]
            if sites and left_out:
                print_log(
                    f'{method}: {_table_key(type(backbone))} has no {form} '
                    f'site kind(s) {left_out} (it has {sorted(table)}; a '
                    'kind naming a module that applies its weight itself '
                    f'takes no {form} site); the method runs on {sites} '
                    'only', logger='current', level=logging.WARNING)
        if explicit and not sites:
            raise UnknownNameError(f'{method}: sites is empty; name at least '
                                   f'one of {sorted(table)}')
        unknown = set(sites) - set(table)
        if unknown or not sites:
            missing = sorted(unknown or set(default_sites))
            raise UnknownNameError(
                f'{method}: {_table_key(type(backbone))} has no site kind(s) '
                f'{missing} in the attach-site table (it has '
                f'{sorted(table)}){"" if explicit else " by default"}; '
                'choose sites= among those, or name modules with targets=')
        wrong = [k for k in sites if not _takes_form(table[k], form)]
        if wrong:
            raise UnknownNameError(
                f'{method}: site kind(s) {wrong} of '
                f'{_table_key(type(backbone))} name a module that applies '
                f'its weight itself; a {form} site cannot take it: leave '
                'them out of sites=')
        targets = {kind: table[kind] for kind in sites}
    specs = {kind: _as_site_spec(spec) for kind, spec in targets.items()}
    patterns = {kind: re.compile(s.module) for kind, s in specs.items()}

    found: List[AttachSite] = []
    for path, module in backbone.named_modules():
        for kind, pattern in patterns.items():
            match = pattern.fullmatch(path)
            if match is None:
                continue
            stage = match.groupdict().get('stage')
            group = kind if stage is None else f'{kind}_stage{stage}'
            if form == 'input':
                found.append(
                    _make_site(path, kind, group, module, specs[kind]))
            elif form == 'delta':
                found.append(
                    _make_delta_site(path, kind, group, module, specs[kind]))
            elif form == 'module':
                # An identity stands for a module turned off (a drop path
                # at rate 0): the site stays, with its parent's width.
                parent = backbone.get_submodule(path.rpartition('.')[0])
                found.append(
                    _make_module_site(path, kind, group, module, parent))
            elif not isinstance(module, nn.Identity):  # a norm turned off
                found.append(_make_output_site(path, kind, group, module))
    missing = set(patterns) - {site.kind for site in found}
    if missing:
        raise ValueError(f'site kinds {sorted(missing)} match no module of '
                         f'{type(backbone).__name__}')
    paths = [site.path for site in found]
    twice = sorted({p for p in paths if paths.count(p) > 1})
    if twice:
        kinds = sorted({s.kind for s in found if s.path in twice})
        raise ValueError(f'site kinds {kinds} name the same module '
                         f'{twice[0]!r}; choose one')
    nested = [(a, b) for a in paths for b in paths
              if b.startswith(a + '.')]
    if nested:
        raise ValueError(f'attach sites overlap: {nested[0][1]!r} is inside '
                         f'{nested[0][0]!r}; adapters on both would not fold')
    return found


def _as_site_spec(spec: Union[str, dict, SiteSpec]) -> SiteSpec:
    """A table or ``targets`` entry as a :class:`SiteSpec`: a regex
    names linears themselves; a dict (from a config) gives its fields."""
    if isinstance(spec, SiteSpec):
        return spec
    if isinstance(spec, dict):
        spec = dict(spec)
        for name in ('bias_sink', 'inputs'):
            if isinstance(spec.get(name), list):
                spec[name] = tuple(spec[name])
        return SiteSpec(**spec)
    return SiteSpec(module=spec)


def normalize_sites(
        sites: Optional[Union[str, Sequence[str]]]) -> Optional[tuple]:
    """Accept ``'attn'`` as well as ``('attn', 'ffn')``; None stays."""
    if sites is None:
        return None
    return (sites, ) if isinstance(sites, str) else tuple(sites)
