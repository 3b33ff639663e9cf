# Copyright (c) mmpetl contributors. All rights reserved.
import random

from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from mmpetl.registry import HOOKS


def noah_backbone(runner):
    """The :class:`~mmpetl.models.NOAHBackbone` of the runner's model, or a
    one-line ``TypeError``."""
    from mmpetl.models import NOAHBackbone
    model = runner.model.module if is_model_wrapper(
        runner.model) else runner.model
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, NOAHBackbone) or backbone.space is None:
        raise TypeError('NOAHSupernetHook needs a model whose backbone is a '
                        'NOAHBackbone supernet (search_space=), not '
                        f'{type(backbone).__name__}')
    return backbone


@HOOKS.register_module()
class NOAHSupernetHook(Hook):
    """One-shot training of a NOAH supernet: a random subnet per training
    iteration.

    As the reference (``supernet_engine_prompt.py``): before each
    iteration a subnet is drawn
    (:func:`~mmpetl.models.adapters.noah.sample_arch`) from a generator
    seeded with the epoch at the start of
    each epoch (``random.seed(epoch)``), so every rank draws the same
    subnets and a resumed run the same as an uninterrupted one. Validation
    and testing run the largest subnet (the reference evaluates one more
    random draw).

    Args:
        seed (int): Added to the epoch for the generator's seed. Defaults
            to 0 (the reference's seeds).
    """

    priority = 'NORMAL'

    def __init__(self, seed: int = 0):
        self.seed = seed
        self.rng = random.Random(seed)

    def before_train_epoch(self, runner) -> None:
        self.rng = random.Random(self.seed + runner.epoch)

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        backbone = noah_backbone(runner)
        backbone.set_arch(backbone.sample_arch(self.rng))

    def _largest(self, runner) -> None:
        backbone = noah_backbone(runner)
        backbone.set_arch(backbone.largest_arch())

    def before_val_epoch(self, runner) -> None:
        self._largest(runner)

    def before_test_epoch(self, runner) -> None:
        self._largest(runner)
