# Copyright (c) mmpetl contributors. All rights reserved.
"""Data-parallel training of adapter models: who decides what DDP searches.

``DistributedDataParallel(find_unused_parameters=True)`` walks the autograd
graph after every forward to find the trainable parameters that got no
gradient; with ``False`` a trainable parameter that gets none makes DDP fail
at the *next* iteration ("Expected to have finished reduction in the prior
iteration"), far from its cause. mmengine leaves the choice to a user flag
(``find_unused_parameters`` in the config).

An mmpetl wrapper knows the answer for what it trains: its first training
forward proves that every trainable parameter of the backbone gets a
gradient from the backbone's outputs
(:func:`~mmpetl.models.site_check.check_trainable_reached`), and stops the
run with the parameter's name otherwise, before DDP's first reduction; and
it says whether some of them reach only some outputs
(:meth:`~mmpetl.models.FrozenBackbone.outputs_own_parameters`: E3VA's
per-output norms), which a head reading a subset of the outputs (a
classifier on the last stage) leaves without gradient. So
:class:`AdapterDistributedDataParallel` takes ``find_unused_parameters``
from the model: a search only where a wrapper has such parameters, none
otherwise (heads and necks run on every training step, as mmengine assumes
by default). A config that sets ``find_unused_parameters`` explicitly (for a
head that skips parameters on some steps) is followed, and logged.

:func:`set_model_wrapper` makes it the model wrapper of a distributed run
(``tools/train.py`` calls it), with NCCL on GPUs and gloo on CPUs alike.
"""
from typing import Optional

from mmengine.logging import print_log
from mmengine.model import (MMDistributedDataParallel,
                            MMFullyShardedDataParallel)
from torch import nn

from mmpetl.registry import MODEL_WRAPPERS

__all__ = ['AdapterDistributedDataParallel',
           'AdapterFullyShardedDataParallel', 'set_model_wrapper',
           'wrapped_backbones']


def wrapped_backbones(model: nn.Module):
    """The mmpetl wrappers (:class:`~mmpetl.models.FrozenBackbone`) in
    ``model``."""
    from mmpetl.models.adapter_backbone import FrozenBackbone
    return [m for m in model.modules() if isinstance(m, FrozenBackbone)]


@MODEL_WRAPPERS.register_module()
class AdapterDistributedDataParallel(MMDistributedDataParallel):
    """mmengine's DDP wrapper with ``find_unused_parameters`` decided by the
    model (see the module docstring).

    Args:
        module (nn.Module): The model.
        find_unused_parameters (bool, optional): An explicit choice; None
            (the default) lets the model decide (see the module
            docstring).
        **kwargs: The rest of ``MMDistributedDataParallel``'s arguments.
    """

    def __init__(self,
                 module: nn.Module,
                 find_unused_parameters: Optional[bool] = None,
                 **kwargs):
        wrappers = wrapped_backbones(module)
        if find_unused_parameters is None:
            owners = sorted({type(w).__name__ for w in wrappers
                             if w.outputs_own_parameters()})
            find_unused_parameters = bool(owners)
            if owners:
                reason = (f'{", ".join(owners)}: parameters of one output, '
                          'unused where the head reads others')
            elif wrappers:
                names = sorted({type(w).__name__ for w in wrappers})
                reason = (f'{", ".join(names)}: every trainable parameter '
                          'reaches the last output, checked on the first '
                          'step')
            else:
                reason = 'no mmpetl wrapper: the mmengine default'
        else:
            reason = 'set in the config'
        print_log(f'DDP find_unused_parameters={find_unused_parameters} '
                  f'({reason})', logger='current')
        super().__init__(
            module, find_unused_parameters=find_unused_parameters, **kwargs)


def set_model_wrapper(cfg) -> None:
    """Make :class:`AdapterDistributedDataParallel` the model wrapper of
    ``cfg`` unless it names one; a ``find_unused_parameters`` set in the
    config is passed on."""
    if cfg.get('model_wrapper_cfg'):
        return
    wrapper = dict(type='mmpetl.AdapterDistributedDataParallel',
                   broadcast_buffers=False)
    if cfg.get('find_unused_parameters') is not None:
        wrapper['find_unused_parameters'] = cfg.find_unused_parameters
    cfg.model_wrapper_cfg = wrapper


#: The module-path part FSDP (``FullyShardedDataParallel``) adds.
FSDP_PREFIX = '_fsdp_wrapped_module.'


@MODEL_WRAPPERS.register_module()
class AdapterFullyShardedDataParallel(MMFullyShardedDataParallel):
    """mmengine's FSDP wrapper, with adapter-only checkpoints.

    FSDP's full state dict (``FSDPStrategy(state_dict_cfg='full')``)
    expects every parameter of a unit in it when its own post-hook runs, so
    the mmpetl wrappers' hook that drops the frozen backbone weights
    (:class:`~mmpetl.models.FrozenBackbone`) must wait: here they keep them
    inside, and a post-hook of this wrapper, which runs after FSDP's, drops
    them from the gathered dict (rank 0, offloaded to CPU, one unit at a
    time). The backbone fingerprint each wrapper records in the state
    dict's metadata is kept under its module path both with FSDP's prefix
    (for resuming into FSDP) and without it (for ``tools/reparam.py``,
    ``tools/test.py`` and the stock model), so the checkpoint is an
    ordinary adapter checkpoint.

    ``use_orig_params=True`` (mmengine's default): frozen and trainable
    parameters share a flat parameter per unit, and optimizer state is kept
    for the trainable ones only; FSDP1 keeps a (sharded) gradient for the
    whole flat parameter, frozen part included (docs/en/scaling.md).
    """

    def __init__(self, module: nn.Module, **kwargs):
        wrappers = wrapped_backbones(module)
        paths = {id(m): name for name, m in module.named_modules()}
        self._frozen_keys = []
        for wrapper in wrappers:
            if not wrapper.save_frozen:
                prefix = f'{paths[id(wrapper)]}.' if paths[id(wrapper)] \
                    else ''
                self._frozen_keys += [prefix + key
                                      for key in wrapper.frozen_state_keys()]
                wrapper.save_frozen = True
        super().__init__(module, **kwargs)
        self._register_state_dict_hook(_drop_frozen_after_fsdp)


def _drop_frozen_after_fsdp(module, state_dict, prefix, local_metadata):
    """See :class:`AdapterFullyShardedDataParallel`."""
    for key in module._frozen_keys:
        state_dict.pop(prefix + key, None)
    metadata = getattr(state_dict, '_metadata', None)
    if metadata is None:
        return
    for key in list(metadata):
        plain = key.replace(FSDP_PREFIX, '').replace(FSDP_PREFIX[:-1], '')
        metadata.setdefault(plain.strip('.'), metadata[key])
