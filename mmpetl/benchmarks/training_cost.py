# Copyright (c) mmpetl contributors. All rights reserved.
"""Training-step memory and time of models compared within one run.

Memory, as a figure that does not depend on the device: the bytes autograd
saves for backward during the forward (recorded with
``torch.autograd.graph.saved_tensors_hooks``; tensors sharing a storage count
once, parameters are not activations and count as parameters), plus parameter
bytes (all), gradient bytes (trainable parameters) and optimizer-state bytes
(what AdamW actually holds after a step: two moments per trainable
parameter). On CUDA, ``torch.cuda.max_memory_allocated`` over a step too.

Time: median seconds of a full training step (``model.train_step``: data
preprocessing, forward, backward, optimizer step), models timed in
interleaved rounds so that a shared machine's noise hits them alike.
"""
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch
from mmengine.optim import OptimWrapper
from torch import nn

from mmpetl.models import FrozenBackbone
from .latency import synchronize


@dataclass
class StepCost:
    """Training-step cost of one model (bytes and seconds)."""
    saved: int
    params: int
    grads: int
    optimizer: int
    seconds: float = float('nan')
    cuda_peak: Optional[int] = None

    @property
    def memory(self) -> int:
        """Saved activations + parameters + gradients + optimizer state."""
        return self.saved + self.params + self.grads + self.optimizer


def relative_costs(costs: Dict[str, StepCost], full: str,
                   floor: str) -> Dict[str, dict]:
    """Each model's memory and step time as ratios to the ``full``
    (fine-tuning) model's and the ``floor`` (frozen backbone) model's.

    Returns:
        dict: Name -> ``train_memory_rel_full`` (memory / full's memory),
        ``step_time_rel_full`` (seconds / full's), ``train_memory_rel_floor``,
        ``step_time_rel_floor`` (the same over the floor's),
        ``train_memory_bytes`` (:attr:`StepCost.memory`) and
        ``step_time_s`` (:attr:`StepCost.seconds`).
    """
    return {
        name: dict(
            train_memory_rel_full=c.memory / costs[full].memory,
            step_time_rel_full=c.seconds / costs[full].seconds,
            train_memory_rel_floor=c.memory / costs[floor].memory,
            step_time_rel_floor=c.seconds / costs[floor].seconds,
            train_memory_bytes=c.memory,
            step_time_s=c.seconds)
        for name, c in costs.items()
    }


def _nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


class AutocastOptimWrapper(OptimWrapper):
    """Mixed precision as mmengine's ``AmpOptimWrapper`` runs it (the
    forward under ``torch.autocast``, the backward and the fp32 update
    outside), without a loss scaler and on any device: for bf16 (which
    needs no scaling) on CPU, where ``AmpOptimWrapper`` refuses to run.

    Args:
        optimizer: The optimizer.
        dtype (torch.dtype): Autocast dtype. Defaults to ``torch.bfloat16``.
    """

    def __init__(self, optimizer, dtype: torch.dtype = torch.bfloat16,
                 **kwargs):
        super().__init__(optimizer, **kwargs)
        self.dtype = dtype

    @contextmanager
    def optim_context(self, model: nn.Module):
        device = next(model.parameters()).device.type
        with super().optim_context(model), torch.autocast(device,
                                                          dtype=self.dtype):
            yield


def make_optim_wrapper(model: nn.Module, lr: float = 1e-4,
                       autocast_dtype: Optional[torch.dtype] = None
                       ) -> OptimWrapper:
    """AdamW over the trainable parameters; with ``autocast_dtype``, its
    forward under autocast (:class:`AutocastOptimWrapper`)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=lr)
    if autocast_dtype is None:
        return OptimWrapper(optimizer)
    return AutocastOptimWrapper(optimizer, dtype=autocast_dtype)


def _saved_bytes(model: nn.Module, run: Callable[[], object]) -> int:
    """Bytes of the distinct storages autograd saves for backward while
    ``run()`` runs, parameters excluded (what a backward saves, e.g. E3VA's
    recomputed stages regenerating their taps at its end, is transient and
    not counted)."""
    # The steady-state step, not the one-off first-step checks of the
    # wrappers (an extra forward and backward on one sample).
    for module in model.modules():
        if isinstance(module, FrozenBackbone):
            module.trainable_checked = True
    param_storages = {
        p.untyped_storage().data_ptr()
        for p in model.parameters()
    }
    storages: Dict[int, int] = {}

    def pack(tensor):
        if torch._C._current_graph_task_id() == -1:  # not inside a backward
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in param_storages:
                storages[storage.data_ptr()] = storage.nbytes()
        # Detached (same storage): a node holding its own output's Python
        # tensor, which holds the node, is a cycle the garbage collector
        # cannot see, and a forward without backward would never free it.
        return tensor.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        run()
    return sum(storages.values())


def saved_bytes_of_step(model: nn.Module, data: dict,
                        optim_wrapper: OptimWrapper) -> int:
    """Bytes of the distinct storages autograd saves in one training step,
    parameters excluded."""
    return _saved_bytes(model, lambda: model.train_step(data, optim_wrapper))


def saved_bytes_of_forward(model: nn.Module, data: dict) -> int:
    """Bytes of the distinct storages autograd saves for backward in the
    forward and loss of a training step, parameters excluded.

    The same count as :func:`saved_bytes_of_step` (autograd saves during the
    forward only) at a third of its cost, with no optimizer step: for a
    batch too large to time on a CPU.
    """
    model.train()
    return _saved_bytes(
        model, lambda: model.parse_losses(
            model._run_forward(model.data_preprocessor(data, True),
                               mode='loss')))


def require_input_grad(module: nn.Module):
    """Make the first input of ``module`` require grad (a forward pre-hook).

    Backward then runs the input gradient through ``module`` even where none
    of its parameters trains. On a frozen backbone this is the floor of a
    sequential adapter's training step: forward plus input-gradient
    backward, no weight gradients (an adapter in the first layer needs the
    gradient of every layer above it).

    Returns:
        The hook's handle (``.remove()`` undoes it).
    """

    def hook(module, args):
        return (args[0].detach().requires_grad_(), ) + tuple(args[1:])

    return module.register_forward_pre_hook(hook)


def measure_training_steps(models: Dict[str, nn.Module],
                           data: dict,
                           rounds: int = 3,
                           warmup: int = 1,
                           autocast_dtype: Optional[torch.dtype] = None
                           ) -> Dict[str, StepCost]:
    """Memory and median step time of each model on the same ``data``.

    Args:
        models (dict): Name -> model (an OpenMMLab ``BaseModel`` with a
            data preprocessor); put in training mode here.
        data (dict): A batch as the dataloader yields it
            (``dict(inputs=[...], data_samples=[...])``).
        rounds (int): Timed steps per model, interleaved across models.
        warmup (int): Untimed steps per model first (at least one: it
            creates the optimizer state that is measured).
        autocast_dtype (torch.dtype, optional): Mixed precision: run the
            forward under autocast in this dtype (see
            :func:`make_optim_wrapper`).
    """
    costs: Dict[str, StepCost] = {}
    wrappers = {}
    for name, model in models.items():
        model.train()
        wrappers[name] = make_optim_wrapper(
            model, autocast_dtype=autocast_dtype)
        device = next(model.parameters()).device
        for _ in range(max(warmup, 1)):
            model.train_step(data, wrappers[name])
        if device.type == 'cuda':
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        saved = saved_bytes_of_step(model, data, wrappers[name])
        trainable = [p for p in model.parameters() if p.requires_grad]
        state = [
            v for s in wrappers[name].optimizer.state.values()
            for v in s.values() if torch.is_tensor(v) and v.dim() > 0
        ]
        costs[name] = StepCost(
            saved=saved,
            params=_nbytes(model.parameters()),
            grads=_nbytes(trainable),
            optimizer=_nbytes(state),
            cuda_peak=torch.cuda.max_memory_allocated(device)
            if device.type == 'cuda' else None)
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            device = next(model.parameters()).device
            synchronize(device)
            start = time.perf_counter()
            model.train_step(data, wrappers[name])
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    for name, seconds in times.items():
        costs[name].seconds = statistics.median(seconds)
    return costs


def profile_step(model: nn.Module, data: dict,
                 optim_wrapper: OptimWrapper) -> Dict[str, float]:
    """Self CPU seconds of one training step, per operator and input shapes
    (``'aten::mm [[3152, 768], [768, 9]]'``), from ``torch.profiler``.

    Comparing two models' tables on the same batch shows where a step's
    extra time goes: keys that only one model has are its own operators
    (an adapter's thin GEMMs), keys both have but with different times are
    the shared backbone running slower or faster.
    """
    from torch.profiler import ProfilerActivity, profile
    model.train()
    with profile(activities=[ProfilerActivity.CPU],
                 record_shapes=True) as prof:
        model.train_step(data, optim_wrapper)
    table: Dict[str, float] = {}
    for event in prof.key_averages(group_by_input_shape=True):
        key = f'{event.key} {event.input_shapes}'
        table[key] = table.get(key, 0.0) + event.self_cpu_time_total / 1e6
    return table


def dense_batch(task: str, size: int, batch_size: int,
                num_classes: int) -> dict:
    """A random batch as mmseg's / mmdet's dataloaders yield it.

    Args:
        task (str): ``'seg'`` (semantic maps) or ``'det'`` (boxes, masks).
        size (int): Square image side.
        batch_size (int): Images in the batch.
        num_classes (int): Label range.
    """
    generator = torch.Generator().manual_seed(0)
    inputs, samples = [], []
    meta = dict(img_shape=(size, size), ori_shape=(size, size),
                scale_factor=(1.0, 1.0))
    for _ in range(batch_size):
        inputs.append(
            torch.randint(0, 256, (3, size, size), generator=generator,
                          dtype=torch.uint8))
        if task == 'seg':
            from mmengine.structures import PixelData
            from mmseg.structures import SegDataSample
            labels = torch.randint(0, num_classes, (1, size, size),
                                   generator=generator)
            samples.append(SegDataSample(
                gt_sem_seg=PixelData(data=labels), metainfo=meta))
        elif task == 'det':
            import numpy as np
            from mmdet.structures import DetDataSample
            from mmdet.structures.mask import BitmapMasks
            from mmengine.structures import InstanceData
            count = 8
            corners = torch.rand(count, 2, 2, generator=generator) * size
            boxes = torch.cat([corners.min(1).values,
                               corners.max(1).values + 8], 1).clamp(0, size)
            masks = np.zeros((count, size, size), dtype=np.uint8)
            for mask, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist()):
                mask[y0:y1, x0:x1] = 1
            samples.append(DetDataSample(
                gt_instances=InstanceData(
                    bboxes=boxes,
                    labels=torch.randint(0, num_classes, (count, ),
                                         generator=generator),
                    masks=BitmapMasks(masks, size, size)),
                metainfo=meta))
        else:
            raise ValueError(f"task must be 'seg' or 'det', not {task!r}")
    return dict(inputs=inputs, data_samples=samples)


def classification_batch(size: int, batch_size: int,
                         num_classes: int) -> dict:
    """A random batch as mmpretrain's dataloaders yield it: uint8 images
    (3, size, size) and ``DataSample`` s with a ground-truth label."""
    from mmpretrain.structures import DataSample
    generator = torch.Generator().manual_seed(0)
    return dict(
        inputs=[
            torch.randint(0, 256, (3, size, size), generator=generator,
                          dtype=torch.uint8) for _ in range(batch_size)
        ],
        data_samples=[
            DataSample().set_gt_label(int(label)) for label in torch.randint(
                0, num_classes, (batch_size, ), generator=generator)
        ])
