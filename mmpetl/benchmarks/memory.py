# Copyright (c) mmpetl contributors. All rights reserved.
"""Counted training memory of giant backbones, per method, without running
them.

Every model is built on PyTorch's ``meta`` device (shapes and dtypes, no
storage, no arithmetic) at its real size, and one training forward is run
on a meta batch under ``torch.autograd.graph.saved_tensors_hooks``: what
autograd saves for backward is counted in bytes, exactly as
:mod:`mmpetl.benchmarks.training_cost` counts it on a real device (distinct
storages, parameters excluded). To it are added the parameters (all, float32),
the gradients (trainable parameters) and AdamW's two moments (trainable
parameters)::

    memory = saved + 4 P + 4 T + 8 T          (bytes, float32)

and, under FSDP over ``N`` ranks with one unit per transformer layer
(``FULL_SHARD``), per rank::

    memory_N = saved + (4 P + 4 P + 8 T) / N + 4 P_unit     (T > 0)

where ``P_unit`` is the largest unit's parameter count (the one gathered
at a time; the root's embeddings and norms included). The gradient is
counted for every parameter there: FSDP1 (mmengine's ``FSDPStrategy``)
keeps one gradient per unit's flat parameter, frozen part included, when
the unit holds a trainable one (every layer with an adapter: an upper
bound for methods that train a few layers). Not counted: the
CUDA context, the allocator's fragmentation, transient buffers of
kernels (attention's workspace), the backward's own peaks (a gradient of
each activation in turn) and the data; a GPU is said to "fit" a model when
the counted figure is at most 90% of its memory. Backbone only (a
classification head is negligible at these sizes).
"""
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

import torch
from torch import nn

from mmpetl.models import FrozenBackbone
from mmpetl.registry import MODELS

__all__ = ['GIANTS', 'GPU_GIB', 'MemoryCount', 'count_memory', 'fits',
           'memory_table', 'format_memory_table']

#: Row name -> real-size stock config (mmpretrain arch names) and the input
#: side its pre-training used.
GIANTS: Dict[str, dict] = {
    'ViT-L/16': dict(type='mmpretrain.VisionTransformer', arch='l',
                     img_size=224, patch_size=16),
    'ViT-H/14': dict(type='mmpretrain.VisionTransformer', arch='h',
                     img_size=224, patch_size=14),
    'ViT-g/14 (EVA-g)': dict(type='mmpretrain.VisionTransformer',
                             arch='eva-g', img_size=224, patch_size=14),
    'EVA-02-L': dict(type='mmpretrain.ViTEVA02', arch='l', img_size=224),
    'DINOv2-g': dict(type='mmpretrain.VisionTransformer', arch='dinov2-g',
                     img_size=224, patch_size=14,
                     layer_scale_init_value=1e-5,
                     layer_cfgs=dict(ffn_type='swiglu_fused')),
    'SAM ViT-H': dict(type='mmpretrain.ViTSAM', arch='h', img_size=1024),
}

#: GPU sizes the table answers for, in GiB.
GPU_GIB = (24, 40, 80)
#: Share of a GPU's memory the counted figure may use to "fit".
FIT_SHARE = 0.9


class MemoryCount:
    """Counted bytes of one model's training step.

    Args:
        params (int): Parameter count (all).
        trainable (int): Trainable parameter count.
        saved (int): Bytes autograd saves for backward in one forward.
        largest_unit (int): Parameter count of the largest FSDP unit.
    """

    def __init__(self, params: int, trainable: int, saved: int,
                 largest_unit: int):
        self.params = params
        self.trainable = trainable
        self.saved = saved
        self.largest_unit = largest_unit

    def gradients(self, ranks: int = 1) -> int:
        """Gradient bytes (float32) on one rank of ``ranks``: the trainable
        parameters' on one GPU; under FSDP1 (``ranks`` > 1) a shard of every
        parameter's, as it keeps one gradient per flat parameter, frozen
        part included, in each unit that holds a trainable parameter (an
        upper bound where some units hold none: VPT-shallow, Partial-1)."""
        if ranks == 1 or not self.trainable:
            return 4 * self.trainable
        return 4 * self.params // ranks

    def total(self, ranks: int = 1) -> int:
        """Counted bytes on one rank of ``ranks`` (1: no FSDP)."""
        states = 4 * self.params + 8 * self.trainable  # weights, AdamW
        unit = 0 if ranks == 1 else 4 * self.largest_unit
        return self.saved + states // ranks + self.gradients(ranks) + unit


def fits(nbytes: int, gib: int) -> bool:
    """Whether ``nbytes`` is at most :data:`FIT_SHARE` of ``gib`` GiB."""
    return nbytes <= FIT_SHARE * gib * 2**30


@contextmanager
def _counting(model: nn.Module) -> Iterator[Dict[int, int]]:
    """Record the storages autograd saves (bytes by storage) while inside;
    parameters excluded. Meta storages have no address: they are told apart
    by their C++ object."""
    for module in model.modules():
        if isinstance(module, FrozenBackbone):
            # Steady state: not the one-off first-step checks (which need
            # values).
            module.trainable_checked = True
    params = {p.untyped_storage()._cdata for p in model.parameters()}
    storages: Dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage._cdata not in params:
            storages[storage._cdata] = storage.nbytes()
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        yield storages


def _largest_unit(model: nn.Module) -> int:
    """Parameters of the largest FSDP unit when each transformer layer
    (``layers.<i>``) is one unit and the rest is the root."""
    layers = [m for name, m in model.named_modules()
              if name.rsplit('.', 2)[-2:-1] == ['layers']]
    in_layers = {id(p) for m in layers for p in m.parameters()}
    root = sum(p.numel() for p in model.parameters()
               if id(p) not in in_layers)
    per_layer = [sum(p.numel() for p in m.parameters()) for m in layers]
    return max([root] + per_layer)


def count_memory(method: Optional[dict], backbone: dict,
                 batch_size: int) -> MemoryCount:
    """Counted training memory of ``method`` (a wrapper config without
    ``backbone``; None: full fine-tuning of the stock backbone) on
    ``backbone`` at batch ``batch_size`` (see the module docstring)."""
    with torch.device('meta'):
        # Built, not initialised (initialisers read values): the wrappers
        # take a built backbone as it is.
        model = MODELS.build(dict(backbone))
        if method is not None:
            model = MODELS.build(dict(method, backbone=model))
        model.train()
        size = backbone.get('img_size', 224)
        inputs = torch.empty(batch_size, 3, size, size)
        with _counting(model) as storages:
            model(inputs)
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return MemoryCount(params, trainable, sum(storages.values()),
                       _largest_unit(model))


def memory_table(methods: Dict[str, Optional[dict]], backbone: dict,
                 batch_size: int, ranks=(2, 4, 8)) -> List[dict]:
    """One row per method: counts, GiB on one GPU and per FSDP rank, and the
    GPUs of :data:`GPU_GIB` that fit each. A method the backbone refuses
    (no site of its kind) gets ``refused``: the one-line reason."""
    rows = []
    for name, method in methods.items():
        try:
            count = count_memory(method, backbone, batch_size)
        except (KeyError, ValueError, TypeError) as e:
            rows.append(dict(method=name, refused=str(e).splitlines()[0]))
            continue
        row = dict(method=name, params=count.params,
                   trainable=count.trainable, saved=count.saved)
        for n in (1, ) + tuple(ranks):
            nbytes = count.total(n)
            row[f'gib_{n}'] = nbytes / 2**30
            row[f'fits_{n}'] = [g for g in GPU_GIB if fits(nbytes, g)]
        rows.append(row)
    return rows


def format_memory_table(giant: str, rows: List[dict], batch_size: int,
                        ranks=(2, 4, 8)) -> List[str]:
    """``rows`` of :func:`memory_table` as Markdown lines: GiB on one GPU
    and per FSDP rank, and the GPUs (GB) each fits on one GPU and with FSDP
    over the most ranks."""
    ranks = (1, ) + tuple(ranks)
    lines = [f'{giant}, batch {batch_size}:', '',
             '| method | trainable | activations GiB | ' + ' | '.join(
                 f'GiB {"1 GPU" if n == 1 else f"FSDP {n}"}'
                 for n in ranks) + ' | fits (1 GPU) | fits (FSDP 8) |',
             '| --- | ---: | ---: |' + ' ---: |' * len(ranks) + ' --- | --- |']
    for row in rows:
        if 'refused' in row:
            lines.append(f'| {row["method"]} | - (refused: '
                         f'{row["refused"]}) |')
            continue
        gib = ' | '.join(f'{row[f"gib_{n}"]:.1f}' for n in ranks)

        def gpus(key):
            return ', '.join(f'{g}' for g in row[key]) or 'none'

        lines.append(f'| {row["method"]} | {row["trainable"]:,} | '
                     f'{row["saved"] / 2**30:.1f} | {gib} | '
                     f'{gpus("fits_1")} | {gpus(f"fits_{ranks[-1]}")} |')
    return lines
