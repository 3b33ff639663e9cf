# Copyright (c) mmpetl contributors. All rights reserved.
from collections import defaultdict
from typing import Dict

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from mmpetl.registry import HOOKS


def count_parameters(model: nn.Module) -> Dict[str, int]:
    """Trainable and total parameter counts, and trainable counts per
    top-level child (e.g. ``backbone``, ``head``)."""
    counts: Dict[str, int] = defaultdict(int)
    for name, param in model.named_parameters():
        counts['total'] += param.numel()
        if param.requires_grad:
            counts['trainable'] += param.numel()
            counts[f"trainable.{name.split('.')[0]}"] += param.numel()
    counts.setdefault('trainable', 0)
    return dict(counts)


@HOOKS.register_module()
class ParameterCountHook(Hook):
    """Log trainable / total parameters when training starts."""

    priority = 'VERY_LOW'

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        counts = count_parameters(model)
        parts = ', '.join(f'{k[len("trainable."):]} {v:,}'
                          for k, v in sorted(counts.items())
                          if k.startswith('trainable.'))
        runner.logger.info(
            f'Trainable parameters: {counts["trainable"]:,} / '
            f'{counts["total"]:,} '
            f'({100 * counts["trainable"] / max(counts["total"], 1):.3f}%)'
            f'{" - " + parts if parts else ""}')
