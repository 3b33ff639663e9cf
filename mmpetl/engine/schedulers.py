# Copyright (c) mmpetl contributors. All rights reserved.
"""Learning-rate schedules of the reference code, as MMEngine schedulers."""
import math
from typing import List

from mmengine.optim.scheduler.lr_scheduler import LRSchedulerMixin
from mmengine.optim.scheduler.param_scheduler import INF, _ParamScheduler

from mmpetl.registry import PARAM_SCHEDULERS


@PARAM_SCHEDULERS.register_module()
class TimmCosineLR(LRSchedulerMixin, _ParamScheduler):
    r"""timm's ``CosineLRScheduler`` stepped as the RepAdapter reference
    code steps it: once per epoch, with the index of the epoch just finished.

    With ``t = max(step - lag, 0)`` (``step`` counts the scheduler's steps:
    epochs with ``by_epoch=True``), ``b`` the optimizer's learning rate, the
    value is timm's (one cycle, ``warmup_prefix=False``: the cosine runs
    over the whole of ``t``, warm-up epochs included)::

        t < warmup:       warmup_start + t (b - warmup_start) / warmup
        warmup <= t < T:  eta_min + (b - eta_min) (1 + cos(pi t / T)) / 2
        t >= T:           eta_min

    The reference (``luogen1996/RepAdapter`` ``train.py``) builds
    ``CosineLRScheduler(t_initial=100, warmup_t=10, warmup_lr_init=1e-6,
    lr_min=1e-5)``, which sets the learning rate to ``warmup_lr_init`` at
    construction, and calls ``scheduler.step(ep)`` after epoch ``ep``: epoch
    ``e`` trains at timm's value for ``e - 1`` (epochs 0 and 1 both at
    ``warmup_lr_init``). ``lag=1`` reproduces that; ``lag=0`` is timm's own
    training script (``step(epoch + 1)``). The value is computed in closed
    form from the step count, so resuming gives the same curve.

    Args:
        optimizer (Optimizer | OptimWrapper): The optimizer.
        T (int): ``t_initial``, the cosine's length in steps. Defaults to 100.
        warmup (int): ``warmup_t``, steps of linear warm-up. Defaults to 10.
        warmup_start (float): ``warmup_lr_init``, the absolute learning
            rate at ``t = 0``. Defaults to 1e-6.
        eta_min (float): ``lr_min``, the absolute final learning rate.
            Defaults to 1e-5.
        lag (int): Steps the schedule lags behind the step count (see
            above). Defaults to 1.
        begin (int): Step at which to start. Defaults to 0.
        end (int): Step at which to stop. Defaults to INF.
        last_step (int): See MMEngine's schedulers. Defaults to -1.
        by_epoch (bool): Step per epoch (the reference). Defaults to True.
        verbose (bool): Print each update. Defaults to False.
    """

    def __init__(self,
                 optimizer,
                 T: int = 100,
                 warmup: int = 10,
                 warmup_start: float = 1e-6,
                 eta_min: float = 1e-5,
                 lag: int = 1,
                 begin: int = 0,
                 end: int = INF,
                 last_step: int = -1,
                 by_epoch: bool = True,
                 verbose: bool = False):
        if T <= 0 or warmup < 0 or lag < 0:
            raise ValueError('TimmCosineLR needs T > 0, warmup >= 0 and '
                             f'lag >= 0, got T={T}, warmup={warmup}, '
                             f'lag={lag}')
        self.T = T
        self.warmup = warmup
        self.warmup_start = warmup_start
        self.eta_min = eta_min
        self.lag = lag
        super().__init__(
            optimizer,
            begin=begin,
            end=end,
            last_step=last_step,
            by_epoch=by_epoch,
            verbose=verbose)

    def value_at(self, base: float, step: int) -> float:
        """The learning rate at scheduler step ``step`` for a base ``base``."""
        t = max(step - self.lag, 0)
        if t < self.warmup:
            return self.warmup_start + t * (base -
                                            self.warmup_start) / self.warmup
        if t >= self.T:
            return self.eta_min
        return self.eta_min + 0.5 * (base - self.eta_min) * (
            1 + math.cos(math.pi * t / self.T))

    def _get_value(self) -> List[float]:
        return [self.value_at(base, self.last_step)
                for base in self.base_values]
