# Copyright (c) mmpetl contributors. All rights reserved.
"""Proof, by value, that the pre-trained file filled the frozen backbone.

Every toolbox loads pre-trained weights its own way: mmengine's
``PretrainedInit`` (with a ``prefix``), mmseg's and mmdet's Swin and
mmseg's ViT through their own ``init_weights`` (mmdet's converting official
files with ``convert_weights=True``, which renames keys and re-orders the
patch-merging channels), mmaction2's Video Swin inflating 2D files. All of
them end in ``torch.nn.Module._load_from_state_dict`` of each module, and
all of them load with ``strict=False``: keys that do not match, a
``prefix`` the loader ignores, a file of another arch whose tensors have
other shapes all leave the backbone at its random init with at most a
warning, and a PETL wrapper would then freeze it.

:func:`init_pretrained` therefore runs the backbone's ``init_weights()``
while it *observes the load*: it wraps ``_load_from_state_dict`` of every
module of the backbone, and records, for each tensor of the module, the
tensor the loader offered under its key (after the toolbox's conversion and
the module's own load pre-hooks, e.g. position-embedding resizing), or that
the loader skipped it for its shape. After ``init_weights()`` every
parameter must hold exactly the value it was given (nothing re-initialised
it afterwards). Anything else stops the build with one line naming the
first tensors, the file and what to do.

*New layers*: some toolboxes add layers that no published file has
(:data:`NEW_LAYERS`: the per-output norms ``norm0..3`` of mmseg's and
mmdet's Swin, mmaction2's VideoMAE ``fc_norm``, ...). Left unfilled, they
are returned as new layers, which the wrappers train like the head (a
wrapper whose backbone runs without autograd, E3VA, keeps them at their
init) and report in the trainable-parameter line. Filled by the file, they
are frozen like the rest.
"""
import copy
import re
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Tuple

import torch
from mmengine.runner.checkpoint import _load_checkpoint
from torch import Tensor, nn

from mmpetl.fileio.errors import CheckpointError, UnsafeCheckpointError


class PretrainedLoadError(CheckpointError):
    """The pre-trained file left tensors of the backbone at random init, or
    the loader skipped tensors of another shape."""


#: ``'<package>.<ClassName>'`` -> regex (full match) of the parameter names
#: of layers the toolbox adds that no published checkpoint has. Subclasses
#: are found through their MRO.
NEW_LAYERS: Dict[str, str] = {
    # One norm per output (the official file's last `norm` is not used).
    'mmdet.SwinTransformer': r'norm\d+\.(?:weight|bias)',
    'mmseg.SwinTransformer': r'norm\d+\.(?:weight|bias)',
    # The model zoo files hold norm3 (the official `norm`) only.
    'mmpretrain.SwinTransformer': r'norm\d+\.(?:weight|bias)',
    'mmpretrain.SwinTransformerV2': r'norm\d+\.(?:weight|bias)',
    'mmpretrain.ConvNeXt': r'norm\d+\.(?:weight|bias)',
    'mmaction.SwinTransformer3D': r'norm\d*\.(?:weight|bias)',
    # out_type='avg_featmap': a final norm of the pooled tokens.
    'mmpretrain.VisionTransformer': r'ln2\.(?:weight|bias)',
    # VideoMAE's mean pooling: a fresh fc_norm (its fine-tuning adds it).
    'mmaction.VisionTransformer': r'fc_norm\.(?:weight|bias)',
}

#: How many tensor names one error line shows.
_SHOWN = 3


def _class_keys(module: nn.Module) -> List[str]:
    """``'<package>.<ClassName>'`` of ``module``'s class and its bases."""
    return [
        f"{cls.__module__.split('.')[0]}.{cls.__name__}"
        for cls in type(module).__mro__
    ]


def new_layer_pattern(backbone: nn.Module) -> Optional[str]:
    """The :data:`NEW_LAYERS` regex of ``backbone``'s class, if any."""
    for key in _class_keys(backbone):
        if key in NEW_LAYERS:
            return NEW_LAYERS[key]
    return None


class LoadRecord:
    """What a load offered each tensor of a module tree.

    Attributes:
        offered (dict[str, Tensor]): Tensor name (relative to the observed
            module) -> the tensor the loader offered under its key, shape
            matching (what ``_load_from_state_dict`` copies).
        skipped (dict[str, tuple]): Tensor name -> ``(file shape, model
            shape)`` of the tensors the loader skipped for their shape.
    """

    def __init__(self):
        self.offered: Dict[str, Tensor] = {}
        self.skipped: Dict[str, Tuple[tuple, tuple]] = {}


@contextmanager
def observe_load(root: nn.Module) -> Iterator[LoadRecord]:
    """Record, while inside, what every ``_load_from_state_dict`` call of a
    module of ``root`` is offered (see :class:`LoadRecord`)."""
    record = LoadRecord()
    modules = list(root.named_modules())

    def wrap(path: str, module: nn.Module):
        load = module._load_from_state_dict  # bound: the class's own

        def observed(state_dict, prefix, local_metadata, strict, missing_keys,
                     unexpected_keys, error_msgs):
            # Load pre-hooks run inside: read the state dict afterwards.
            load(state_dict, prefix, local_metadata, strict, missing_keys,
                 unexpected_keys, error_msgs)
            own = [
                *module._parameters.items(),
                *((n, b) for n, b in module._buffers.items()
                  if n not in module._non_persistent_buffers_set)
            ]
            for name, tensor in own:
                key = prefix + name
                if tensor is None or key not in state_dict:
                    continue
                offered = state_dict[key]
                full = f'{path}.{name}' if path else name
                if not isinstance(offered, Tensor):
                    continue
                if offered.shape == tensor.shape:
                    record.offered[full] = offered
                    record.skipped.pop(full, None)
                else:
                    record.skipped[full] = (tuple(offered.shape),
                                            tuple(tensor.shape))

        return observed

    for path, module in modules:
        module._load_from_state_dict = wrap(path, module)
    try:
        yield record
    finally:
        for _, module in modules:
            module.__dict__.pop('_load_from_state_dict', None)


def _names(names: List[str]) -> str:
    more = f' (+{len(names) - _SHOWN} more)' if len(names) > _SHOWN else ''
    return ', '.join(names[:_SHOWN]) + more


def _param_names(module: nn.Module) -> List[str]:
    return [name for name, _ in module.named_parameters()]


def _file_keys(file: str) -> Tuple[List[str], Optional[str]]:
    """Tensor keys of ``file`` (its ``state_dict`` / ``model`` / ``module``
    nesting removed) and that nesting, for the hint; empty if it cannot be
    read."""
    try:
        checkpoint = _load_checkpoint(file, map_location='cpu')
    except Exception:  # the hint is best effort; the error stands
        return [], None
    if not isinstance(checkpoint, dict):
        return [], None
    nesting = None
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), dict):
            checkpoint, nesting = checkpoint[key], key
            break
    return [k for k, v in checkpoint.items() if isinstance(v, Tensor)], \
        nesting


#: A key only the authors' own layout has -> (release, converter tool).
_UPSTREAM_LAYOUTS = {
    'blocks.0.attn.q_proj.weight':
    ('EVA-02', '$(python -c "import mmpretrain,os;print(os.path.dirname('
     'mmpretrain.__file__))")/.mim/tools/model_converters/'
     'eva02_to_mmpretrain.py'),
    'blocks.0.ls1.gamma':
    ('DINOv2', 'tools/model_converters/dinov2_to_mmpretrain.py'),
    'image_encoder.blocks.0.attn.qkv.weight':
    ('SAM', 'tools/model_converters/sam_to_mmpretrain.py'),
    'blocks.0.gamma_1':
    ('BEiT', 'tools/model_converters/beit_to_mmpretrain.py'),
}


def _hint(backbone: nn.Module, file: str, names: List[str],
          skipped: bool) -> str:
    """What to do: the likely fix for ``file`` on ``backbone``."""
    cls = _class_keys(backbone)[0]
    if file.endswith('.npz'):
        return ("it is Google's .npz layout: convert it with python "
                'tools/model_converters/vit_npz2mmpretrain.py')
    keys, nesting = _file_keys(file)
    if skipped:
        return ('the file holds tensors of other shapes: a checkpoint of '
                'another arch or size; use the file of the arch in the '
                'config (type, arch, patch and window sizes)')
    official_swin = any(k.startswith('layers.0.blocks.0.') for k in keys)
    if official_swin and cls in ('mmdet.SwinTransformer',
                                 'mmseg.SwinTransformer'):
        return ('it is the official Swin layout (microsoft/Swin-Transformer):'
                ' set convert_weights=True in the backbone config (mmdet), '
                "or convert it once with mmseg's "
                'tools/model_converters/swin2mmseg.py')
    if official_swin:
        return ("it is the official Swin layout: convert it with mmseg's "
                "tools/model_converters/swin2mmseg.py, then rename norm.* "
                "to the last stage's norm (norm3.*), see the pre-trained "
                'files page')
    for key, (layout, tool) in _UPSTREAM_LAYOUTS.items():
        if key in keys:
            return (f"it is {layout}'s own layout: convert it with python "
                    f'{tool} FILE OUT.pth, then load OUT.pth with '
                    "prefix='backbone.'")
    if any(k.startswith('blocks.0.') for k in keys):
        return ('it is a timm / original-repository layout (blocks.N...): '
                "convert it with the toolbox's converter (mmseg: tools/"
                'model_converters/vit2mmseg.py; VideoMAE: python tools/'
                'model_converters/videomae2mmaction.py)')
    if cls == 'mmseg.VisionTransformer' and any(
            k.startswith('backbone.') for k in keys):
        return ("mmseg's VisionTransformer loads the file's keys as they "
                "are and ignores prefix=: give it a file of backbone keys "
                "(without 'backbone.')")
    wanted = set(names)
    for key in keys:
        for name in names[:50]:
            if key.endswith('.' + name):
                prefix = key[:-len(name)]
                hits = sum(
                    k.startswith(prefix) and k[len(prefix):] in wanted
                    for k in keys)
                if hits * 2 >= len(wanted) and nesting in (None, 'state_dict'):
                    return (f"its keys start with {prefix!r}: add prefix="
                            f"'{prefix}' to the backbone's init_cfg")
                if hits * 2 >= len(wanted):
                    return (f'its keys start with {prefix!r} under '
                            f"{nesting!r}, and mmengine's prefix= reads the "
                            "'state_dict' nesting only: re-save it as "
                            "{'state_dict': ...}")
    return ('is it a checkpoint of this backbone (type, arch and sizes as in '
            'the config)?')


@torch.no_grad()
def check_load(backbone: nn.Module,
               record: LoadRecord,
               file: str,
               owner: str = '') -> Dict[str, nn.Parameter]:
    """Raise :class:`PretrainedLoadError` unless ``record`` (of a load of
    ``file`` into ``backbone``) filled every parameter of it, with the
    values they hold now, and skipped nothing for its shape.

    Returns:
        dict[str, nn.Parameter]: The new layers (:data:`NEW_LAYERS`) the
        file did not fill, by name in ``backbone``.
    """
    params = dict(backbone.named_parameters())
    pattern = new_layer_pattern(backbone)
    new = {
        n: p
        for n, p in params.items()
        if n not in record.offered and pattern and re.fullmatch(pattern, n)
    }
    unfilled = [n for n in params if n not in record.offered and n not in new]
    changed = [
        n for n, p in params.items()
        if n in record.offered and not torch.equal(
            p.detach().cpu(), record.offered[n].detach().cpu().to(p.dtype))
    ]
    skipped = [n for n in record.skipped if n not in record.offered]
    if not (unfilled or changed or skipped):
        return new
    head = (f'{owner}: ' if owner else '') + (f'pre-trained file {file} ')
    name = type(backbone).__name__
    if skipped:
        shown = [
            f'{n} {record.skipped[n][0]} vs {record.skipped[n][1]}'
            for n in skipped
        ]
        what = (f'has {len(skipped)} tensor(s) of another shape than '
                f'{name} (file vs model: {_names(shown)}), which the loader '
                'skipped')
    elif unfilled:
        what = (f'filled {len(params) - len(unfilled) - len(new)} of '
                f'{len(params) - len(new)} parameters of {name}; '
                f'{_names(unfilled)} stay at random init and would be frozen')
    else:
        what = (f'loaded into {name}, but {_names(changed)} were changed '
                'after loading (by its init_weights)')
    raise PretrainedLoadError(
        head + what + ': ' +
        _hint(backbone, file, unfilled or skipped or changed, bool(skipped)))


def init_pretrained(backbone: nn.Module,
                    file: Optional[str],
                    owner: str = '') -> Dict[str, nn.Parameter]:
    """Run ``backbone.init_weights()`` and, when it names a pre-trained
    ``file``, prove the load by value (:func:`check_load`).

    A loader that stops on the file itself (``nn.Module.load_state_dict``
    raises on other shapes even with ``strict=False``; mmdet's Swin and
    mmengine's ``prefix`` find no key at all; not a checkpoint) is the same
    one-line error.

    Returns:
        dict[str, nn.Parameter]: The new layers the file did not fill.
    """
    if file is None:
        backbone.init_weights()
        return {}
    with observe_load(backbone) as record:
        try:
            backbone.init_weights()
        except (PretrainedLoadError, UnsafeCheckpointError):
            raise  # already the whole story (an unsafe file needs no hint)
        except CheckpointError as e:  # not a checkpoint: say what it is
            raise PretrainedLoadError(
                (f'{owner}: ' if owner else '') + f'{e}: ' +
                _hint(backbone, file, _param_names(backbone), False)) from e
        except (RuntimeError, IndexError, KeyError, AssertionError) as e:
            # Other shapes: said below, with the tensors the loader skipped.
            if not record.skipped:
                if isinstance(e, RuntimeError):
                    raise
                raise PretrainedLoadError(
                    (f'{owner}: ' if owner else '') +
                    f'{type(backbone).__name__} found nothing to load in '
                    f'pre-trained file {file} ({type(e).__name__}: {e}): ' +
                    _hint(backbone, file, _param_names(backbone), False)
                ) from e
    return check_load(backbone, record, file, owner)


@torch.no_grad()
def check_built(backbone: nn.Module,
                file: str,
                owner: str = '') -> Dict[str, nn.Parameter]:
    """Prove that a backbone given built (``init_weights()`` already run)
    holds the weights of ``file``: load it again, observed, into a copy,
    and compare. Returns the new layers, as :func:`init_pretrained`."""
    probe = copy.deepcopy(backbone)
    for module in probe.modules():
        if hasattr(module, '_is_init'):
            module._is_init = False
    new = init_pretrained(probe, file, owner)
    current = dict(backbone.named_parameters())
    loaded = dict(probe.named_parameters())
    differ = [
        n for n, p in loaded.items()
        if n not in new and not torch.equal(current[n], p)
    ]
    if differ:
        raise PretrainedLoadError(
            (f'{owner}: ' if owner else '') +
            f'the {type(backbone).__name__} given built does not hold the '
            f'weights of pre-trained file {file} ({_names(differ)} differ): '
            'call its init_weights() before wrapping it, or set its '
            'init_cfg to None if it holds weights loaded otherwise')
    return {n: current[n] for n in new}


def refuse_wrapper_pretrained(owner: str, init_cfg: Any) -> None:
    """A ``Pretrained`` init_cfg on the wrapper would load after the build,
    into nothing the check sees: refuse it."""
    init_cfgs = init_cfg if isinstance(init_cfg, list) else [init_cfg]
    if any(
            isinstance(c, dict) and c.get('type') == 'Pretrained'
            for c in init_cfgs):
        raise PretrainedLoadError(
            f"{owner}: init_cfg=dict(type='Pretrained') on the wrapper is "
            'not applied to the backbone: put it in the stock backbone\'s '
            "config, backbone=dict(..., init_cfg=dict(type='Pretrained', "
            'checkpoint=..., prefix=...))')
