# Copyright (c) mmpetl contributors. All rights reserved.
"""How much of a model trains: the summary peft users know."""
from typing import Callable, NamedTuple

from torch import nn


class ParameterCount(NamedTuple):
    """Parameter counts of a model (each shared parameter once)."""
    #: Elements of the parameters with ``requires_grad``.
    trainable: int
    #: Elements of all parameters.
    total: int

    @property
    def percent(self) -> float:
        """``100 * trainable / total`` (0 for a model without
        parameters)."""
        return 100 * self.trainable / self.total if self.total else 0.0

    def __str__(self) -> str:
        return (f'trainable params: {self.trainable:,d} || all params: '
                f'{self.total:,d} || trainable%: {self.percent:.4f}')


def count_parameters(model: nn.Module) -> ParameterCount:
    """Count the trainable and all parameters of ``model``.

    What trains is what ``requires_grad`` says: for an mmpetl wrapper, its
    adapters and selected stock parameters (and, in a whole model, the
    head); the frozen backbone counts in ``total`` only.

    Args:
        model (nn.Module): Any module, e.g. a wrapper or a classifier.

    Returns:
        ParameterCount: ``(trainable, total)``, and ``percent``.
    """
    trainable = total = 0
    for param in model.parameters():
        total += param.numel()
        if param.requires_grad:
            trainable += param.numel()
    return ParameterCount(trainable, total)


def print_trainable_parameters(model: nn.Module,
                               print_fn: Callable[[str], None] = print
                               ) -> ParameterCount:
    """Print ``trainable params: N || all params: M || trainable%: p``, as
    peft's ``model.print_trainable_parameters()`` does.

    Args:
        model (nn.Module): The model.
        print_fn (callable): Where the line goes. Defaults to ``print``.

    Returns:
        ParameterCount: The counts printed (see :func:`count_parameters`).
    """
    counts = count_parameters(model)
    print_fn(str(counts))
    return counts
