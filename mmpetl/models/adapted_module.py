# Copyright (c) mmpetl contributors. All rights reserved.
import copy
import inspect
from typing import Any, Dict, Optional, Sequence

from torch import Tensor, nn

from .adapted_linear import FoldTarget, InputAffineSite
from .mergeable_adapter import MergeableAdapter
from .petl import AdaptedSite, PETLModule


class ModuleSite(AdaptedSite):
    """Base of the sites that wrap a whole stock module.

    The wrapper *adopts* the module's parameters, buffers and children (the
    same objects under the same names) and adds ``adapter.``, so its state
    dict is the stock module's plus the adapter's, and a stock checkpoint
    still loads into it (with ``assign=True`` too: the module is pointed at
    the loaded tensors). The module itself is held out of the module tree;
    its other attributes are read through the wrapper.

    Args:
        module (nn.Module): The stock module. Not copied.
        adapter (PETLModule): The site's adapter.
    """

    def __init__(self, module: nn.Module, adapter: PETLModule):
        super().__init__()
        for name, param in module._parameters.items():
            self.register_parameter(name, param)
        for name, buffer in module._buffers.items():
            self.register_buffer(
                name,
                buffer,
                persistent=name not in module._non_persistent_buffers_set)
        for name, child in module._modules.items():
            self.add_module(name, child)
        # A list keeps the module out of the tree: its members are adopted
        # (above, before attribute reads fall through to it).
        self._module = [module]
        self._adopted = (*module._parameters, *module._buffers,
                         *module._modules)
        device = next((t.device for t in module.state_dict().values()),
                      None)
        self.adapter = adapter if device is None else adapter.to(device)
        self.train(module.training)
        self.register_load_state_dict_post_hook(
            lambda site, incompatible: site._sync_module())
        # Code that swaps a module's tensors by attribute (FSDP's views of
        # its flat parameters, torch.func.functional_call) swaps the
        # wrapper's: the module reads the current ones at every call.
        self.register_forward_pre_hook(lambda site, args: site._sync_module())

    @property
    def module(self) -> nn.Module:
        """The wrapped stock module."""
        return self._module[0]

    def wrapped_stock(self) -> nn.Module:
        """The wrapped stock module, not a copy."""
        return self.module

    def __getattr__(self, name: str) -> Any:
        # Code around the module reads its attributes (window_size, ...).
        try:
            return super().__getattr__(name)
        except AttributeError:
            wrapped = self.__dict__.get('_module')
            # An adopted member is the wrapper's own, even while it is
            # swapped out (FSDP deletes, then sets its views).
            if wrapped is None or name in self.__dict__['_adopted']:
                raise
            return getattr(wrapped[0], name)

    def _sync_module(self) -> None:
        """Point the module at this wrapper's current tensors (conversions
        and ``load_state_dict(assign=True)`` replace them, FSDP swaps in
        views of its flat parameters)."""
        module = self.module
        for name in module._parameters:
            module._parameters[name] = getattr(self, name)
        for name in module._buffers:
            module._buffers[name] = getattr(self, name)

    def _apply(self, fn, *args, **kwargs):
        super()._apply(fn, *args, **kwargs)
        self._sync_module()
        return self

    def train(self, mode: bool = True) -> 'ModuleSite':
        super().train(mode)
        self.module.training = mode
        return self

    def stock_module(self) -> nn.Module:
        """A copy of the wrapped module, without the adapter."""
        return copy.deepcopy(self.module)

    def extra_repr(self) -> str:
        return f'{type(self.module).__name__}, {self.fold_form}'


class AdaptedModule(ModuleSite, InputAffineSite):
    """A frozen module with an input-affine adapter, for modules that apply
    a weight to their input without calling a linear's ``forward``.

    ``forward(x, ...) = module(a(x), ...)``. The cases in point compute
    ``F.linear(x, qkv.weight, cat(q_bias, 0, v_bias))`` themselves (BEiT,
    Swin V2, VideoMAE attention), or hold the weight as a plain parameter
    (``nn.MultiheadAttention``'s ``in_proj_weight``), so an adapter wrapped
    around a linear would never run. With ``inputs``, the adapter acts on the
    named arguments of the module's forward (``query``, ``key``, ``value``
    of ``nn.MultiheadAttention``); arguments that are the same tensor stay
    the same tensor.

    Folding (:meth:`merged`) follows ``fold_target``
    (:class:`~mmpetl.models.adapted_linear.FoldTarget`): with
    ``a(x) = M x + m`` and the weight ``W`` (out, in), ``W' = W M`` and
    ``W m`` goes to the bias sink. This is exact only if the module's output
    depends on the adapted inputs through ``W x`` (+ its bias) alone; the
    wrapper's site check proves it on the first training forward
    (:mod:`mmpetl.models.site_check`).

    Args:
        module (nn.Module): The stock module. Not copied.
        adapter (MergeableAdapter): The adapter, of the weight's input width.
        fold_target (FoldTarget, optional): Where the adapter folds. None:
            a site that cannot fold (e.g. a paper's reference placement on
            the residual stream); merging it raises.
        inputs (Sequence[str]): Names of the forward arguments to adapt.
            Empty: the first argument.

    Shapes:
        adapted inputs: ``(..., in_features)`` as the module takes them.
    """

    def __init__(self,
                 module: nn.Module,
                 adapter: MergeableAdapter,
                 fold_target: Optional[FoldTarget] = None,
                 inputs: Sequence[str] = ()):
        if fold_target is not None:
            weight = module.get_parameter(fold_target.weight)
            if weight.dim() != 2 or weight.shape[1] != adapter.in_features:
                raise ValueError(
                    f'adapter width {adapter.in_features} does not match '
                    f'{type(module).__name__}.{fold_target.weight} of shape '
                    f'{tuple(weight.shape)} (want (out, in))')
        params = list(inspect.signature(module.forward).parameters)
        inputs = tuple(inputs) or tuple(params[:1])
        unknown = [name for name in inputs if name not in params]
        if unknown:
            raise ValueError(f'{type(module).__name__}.forward has no '
                             f'argument(s) {unknown}; it takes {params}')
        super().__init__(module, adapter)
        self.fold_target = fold_target
        self.inputs = inputs
        self._positions = {name: params.index(name) for name in inputs}

    def forward(self, *args, **kwargs):
        args = list(args)
        adapted: Dict[int, Tensor] = {}  # id(input) -> a(input)

        def adapt(x):
            if not isinstance(x, Tensor):
                return x
            if id(x) not in adapted:
                adapted[id(x)] = self.adapter(x)
            return adapted[id(x)]

        for name, position in self._positions.items():
            if position < len(args):
                args[position] = adapt(args[position])
            elif name in kwargs:
                kwargs[name] = adapt(kwargs[name])
        return self.module(*args, **kwargs)

    def rewrap(self, module: nn.Module,
               adapter: MergeableAdapter) -> 'AdaptedModule':
        return AdaptedModule(module, adapter, self.fold_target, self.inputs)

    def extra_repr(self) -> str:
        target = self.fold_target.weight if self.fold_target else 'no fold'
        return f'{type(self.module).__name__} via {target}'
