# Copyright (c) mmpetl contributors. All rights reserved.
"""Latency measurement for comparing models within one run.

Models are timed in interleaved rounds (A, B, C, A, B, C, ...) so that the
noise of a shared machine hits all of them alike; the median per model is
reported, and the minimum, the figure least affected by other jobs on a
shared CPU.
"""
import statistics
import time
from typing import Callable, Dict, List

import torch
from torch import nn

#: Named backbones for ``tools/benchmarks/inference.py --model``: the stock
#: backbone config and the batch size the README's figures use.
BENCHMARK_MODELS: Dict[str, dict] = {
    'vit-b16':
    dict(
        backbone=dict(type='mmpretrain.VisionTransformer', arch='b'),
        batch_size=8),
    # VideoMAE ViT-B/16: 16 frames of 224x224 (1,568 tokens), one clip.
    'videomae-vit-b':
    dict(
        backbone=dict(type='mmaction.VisionTransformer', num_frames=16),
        batch_size=1),
}


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA); a no-op on CPU."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


@torch.no_grad()
def time_rounds(models: Dict[str, nn.Module],
                inputs: torch.Tensor,
                rounds: int = 30,
                warmup: int = 3,
                forward: Callable = None) -> Dict[str, List[float]]:
    """Seconds of each timed forward of each model on ``inputs``.

    Args:
        models (dict): Name -> model; put in eval mode here.
        inputs (Tensor): The batch, on the models' device.
        rounds (int): Timed forwards per model.
        warmup (int): Untimed forwards per model first.
        forward (callable, optional): ``forward(model, inputs)``; defaults to
            ``model(inputs)``.
    """
    forward = forward or (lambda model, x: model(x))
    for model in models.values():
        model.eval()
        for _ in range(warmup):
            forward(model, inputs)
    times = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            synchronize(inputs.device)
            start = time.perf_counter()
            forward(model, inputs)
            synchronize(inputs.device)
            times[name].append(time.perf_counter() - start)
    return times


def measure_latency(models: Dict[str, nn.Module],
                    inputs: torch.Tensor,
                    rounds: int = 30,
                    warmup: int = 3,
                    forward: Callable = None) -> Dict[str, float]:
    """Median seconds per forward of each model; see :func:`time_rounds`."""
    times = time_rounds(models, inputs, rounds, warmup, forward)
    return {name: statistics.median(t) for name, t in times.items()}
