# Copyright (c) mmpetl contributors. All rights reserved.
"""How much of a model trains: the counts the tools log, and the summary
line peft users know."""
from collections import defaultdict
from typing import Callable, Dict

from torch import nn


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """Trainable and total parameter counts, and trainable counts per
    top-level child (e.g. ``backbone``, ``head``).

    What trains is what ``requires_grad`` says: for an mmpetl wrapper, its
    adapters and selected stock parameters; the frozen backbone counts in
    ``total`` only. A parameter shared by several modules counts once.

    Args:
        model (nn.Module): Any module, e.g. a wrapper or a classifier.

    Returns:
        dict: ``total``, ``trainable`` and ``trainable.<child>`` (elements).
    """
    counts: Dict[str, int] = defaultdict(int)
    for name, param in model.named_parameters():
        counts['total'] += param.numel()
        if param.requires_grad:
            counts['trainable'] += param.numel()
            counts[f"trainable.{name.split('.')[0]}"] += param.numel()
    counts.setdefault('total', 0)
    counts.setdefault('trainable', 0)
    return dict(counts)


def trainable_summary(counts: Dict[str, int]) -> str:
    """``trainable params: N || all params: M || trainable%: p`` for the
    counts of :func:`count_parameters` (``p = 100 N / M``, 4 decimals, as
    peft prints it)."""
    total, trainable = counts['total'], counts['trainable']
    percent = 100 * trainable / total if total else 0.0
    return (f'trainable params: {trainable:,d} || all params: {total:,d} || '
            f'trainable%: {percent:.4f}')


def print_trainable_parameters(model: nn.Module,
                               print_fn: Callable[[str], None] = print
                               ) -> Dict[str, int]:
    """Print ``trainable params: N || all params: M || trainable%: p``, as
    peft's ``model.print_trainable_parameters()`` does.

    Args:
        model (nn.Module): The model.
        print_fn (callable): Where the line goes. Defaults to ``print``.

    Returns:
        dict: The counts printed (see :func:`count_parameters`).
    """
    counts = count_parameters(model)
    print_fn(trainable_summary(counts))
    return counts
