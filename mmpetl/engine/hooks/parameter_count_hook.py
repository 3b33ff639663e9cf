# Copyright (c) mmpetl contributors. All rights reserved.
from typing import List

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import nn

from mmpetl.models.parameter_count import count_parameters
from mmpetl.registry import HOOKS


def site_lines(model: nn.Module) -> List[str]:
    """A table of the adapter sites of every mmpetl adapter wrapper in
    ``model``: path, kind, share group, width and fold target."""
    from mmpetl.models import AdapterBackbone
    header = ('site', 'kind', 'share group', 'width', 'folds into')
    rows = [
        (f'{prefix}.backbone.{row["path"]}'.lstrip('.'), row['kind'],
         row['share_group'], row['width'], row['fold'])
        for prefix, wrapper in model.named_modules()
        if isinstance(wrapper, AdapterBackbone)
        for row in wrapper.site_table()
    ]
    if not rows:
        return []
    widths = [max(len(r[i]) for r in (header, *rows)) for i in range(4)]
    return [
        '  '.join(c.ljust(w) for c, w in zip(r, widths)) + '  ' + r[4]
        for r in (header, *rows)
    ]


def new_layers_note(model: nn.Module) -> str:
    """``'; new layers ...'``: the layers the toolbox adds that the
    pre-trained file has no values for, trained like the head (see
    :mod:`mmpetl.models.pretrained_check`); empty if none."""
    from mmpetl.models import FrozenBackbone
    names = {
        f'{prefix}.backbone.{name}'.lstrip('.'): param.numel()
        for prefix, wrapper in model.named_modules()
        if isinstance(wrapper, FrozenBackbone)
        for name, param in wrapper.trained_new_layers().items()
    }
    if not names:
        return ''
    return (f'; new layers (no pre-trained value, trained like the head): '
            f'{sum(names.values()):,} in {", ".join(sorted(names))}')


@HOOKS.register_module()
class ParameterCountHook(Hook):
    """Log trainable / total parameters when training starts, and where the
    adapters are (:func:`site_lines`)."""

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
            f'{" - " + parts if parts else ""}{new_layers_note(model)}')
        lines = site_lines(model)
        if lines:
            runner.logger.info(f'Adapter sites ({len(lines) - 1}):\n' +
                               '\n'.join(lines))
