# Copyright (c) mmpetl contributors. All rights reserved.
from typing import Any, Dict, FrozenSet, List, Optional, Tuple, Union

from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from mmpetl.fileio.fingerprint import (BackboneFingerprint, pretrained_file,
                                       register_fingerprint_hooks,
                                       weights_digest)
from mmpetl.registry import MODELS
from mmpetl.utils.log_utils import init_records_at_debug
from .adapter_config import record_adapter_config
from .adapter_control import AdapterControlMixin, keep_stock_selected
from .attach_sites import AttachSite
from .petl import AdaptedSite, PETLModule, adapted_sites
from .pretrained_check import (PretrainedLoadError, check_built,
                               init_pretrained, refuse_wrapper_pretrained)
from .site_check import check_trainable_reached, first_forward_pre_hook

__all__ = ['FrozenBackbone', 'AttachSite', 'BackboneArg']

#: What a wrapper's ``backbone`` argument is: the stock backbone's config,
#: or the backbone built.
BackboneArg = Union[dict, nn.Module]

#: Norm layers with running statistics: frozen, they run in eval mode.
_STATEFUL_NORMS = (nn.modules.batchnorm._NormBase, )


@MODELS.register_module()
class FrozenBackbone(AdapterControlMixin, BaseModule):
    """A stock backbone, pre-trained and frozen.

    Builds ``backbone`` from its config and loads its pre-trained weights
    (its ``init_cfg``) at construction, proves by value that they filled
    the backbone (:mod:`~mmpetl.models.pretrained_check`: the load is
    observed; layers the toolbox adds that the file lacks are new layers,
    :meth:`trained_new_layers`, which train like the head), then freezes
    every other parameter of it. A ``Pretrained`` ``init_cfg`` on the
    wrapper itself is refused (it belongs in the backbone's config).
    What trains is decided by type, never by parameter names
    (:mod:`mmpetl.models.petl`): every :class:`PETLModule` inside the
    backbone and the stock parameters of :meth:`selected_parameters`; the
    modules the wrapper owns itself (E3VA's highway, ARC's shared
    projections) train as usual.

    The wrapper owns that rule for the whole run. Whenever the model is put
    in training or evaluation mode (the runner does so every epoch) it
    re-applies it after the backbone's own ``train()``: a backbone option
    that freezes parameters (``frozen_stages``) or norms (``norm_eval``)
    never freezes a trainable module, and frozen norms with running
    statistics (batch norm) always run in evaluation mode, so the frozen
    backbone's statistics never drift and an adapter checkpoint reloaded on
    the pre-trained backbone is the trained model exactly. A backbone that
    checkpoints its blocks (``with_cp=True``) gets an input that requires
    grad in training, so that checkpointing cannot cut the adapters' graph.

    On the first training-mode forward (inside DDP and AMP alike) it proves,
    on that batch, that every trainable parameter (and every slice of
    :meth:`parameter_slices`) gets a gradient from the backbone's outputs
    (:func:`~mmpetl.models.site_check.check_trainable_reached`), and, with
    adapter sites, that every adapter runs and folds exactly
    (:func:`~mmpetl.models.site_check.check_sites`).

    Checkpoints hold only what trains: a state-dict hook drops the frozen
    backbone's entries, and a load hook accepts their absence, so loading an
    adapter checkpoint onto the pre-trained backbone restores the model.
    They also hold the backbone's fingerprint (digest of the frozen weights
    as loaded, and the pre-trained file's name), checked when a state dict
    is loaded: see :mod:`mmpetl.fileio.fingerprint`, and the wrapper's
    settings, from which :func:`mmpetl.load_adapter` rebuilds it (see
    :class:`~mmpetl.models.adapter_control.AdapterControlMixin` for
    ``disable_adapters()``, ``unload()`` and named adapters).

    With no adapters this is the linear-probe baseline, and the floor that
    no adapter method's training cost can go below.

    The backbone is given as a config or as a module already built (the
    Python API: ``RepAdapterBackbone(backbone=classifier.backbone)``). A
    config is built and its pre-trained weights loaded here. A built module
    is taken with the weights it has, and becomes part of the wrapper (its
    linears are replaced by adapted sites in place, as peft does): the
    wrapper marks it initialised, so that a later ``init_weights()`` (the
    Runner's) never re-initialises it. Load its weights before wrapping
    (``init_weights()`` for a ``Pretrained`` init_cfg, or
    ``load_checkpoint``); if its ``init_cfg`` names a pre-trained file, the
    same check as for a config proves that the file's weights are in it.
    Every other check is the same for both.

    Args:
        backbone (dict | nn.Module): Config of the stock backbone, e.g.
            ``dict(type='VisionTransformer', arch='b', init_cfg=dict(
            type='Pretrained', checkpoint='vit-b.pth'))``, or the backbone
            itself, built.
        save_frozen (bool): Keep the frozen weights in checkpoints too.
            Defaults to False.
        init_cfg (dict, optional): Init config of the wrapper's own modules.
        settings (dict, optional): A method's own arguments (``{name:
            value}``), set as attributes before :meth:`attach_adapters`,
            whose steps read them: a subclass passes them here.
    """

    #: Whether training back-propagates through the frozen backbone (False
    #: for E3VA, whose backbone runs without autograd).
    backprop_through_backbone = True
    #: What to do when a trainable parameter gets no gradient (the end of
    #: the first-step check's refusal).
    unreached_fix = ('end out_indices at the last block the backbone runs '
                     '(or build fewer blocks)')

    def __init__(self,
                 backbone: BackboneArg,
                 save_frozen: bool = False,
                 init_cfg: Optional[dict] = None,
                 settings: Optional[Dict[str, Any]] = None):
        refuse_wrapper_pretrained(type(self).__name__, init_cfg)
        super().__init__(init_cfg)
        if not isinstance(backbone, (nn.Module, dict)):
            raise TypeError(
                f'{type(self).__name__}: backbone must be a config dict or a '
                f'built nn.Module, not {type(backbone).__name__}')
        self.save_frozen = save_frozen
        # The method's own arguments, read by the attach steps below.
        for name, value in (settings or {}).items():
            setattr(self, name, value)
        # Outside a Runner (no log file), the build's INFO records (one per
        # backbone parameter from init_weights) are DEBUG records.
        with init_records_at_debug():
            if isinstance(backbone, nn.Module):
                self._take_built(backbone)
            else:
                self._build(backbone)
            self.attach_adapters()
        self.freeze_backbone()
        trainable = [p for p in self.parameters() if p.requires_grad]
        if type(self) is not FrozenBackbone and (
                not trainable or any(not p.numel() for p in trainable)):
            what = ('has an empty trainable weight' if trainable else
                    'trains nothing')
            raise ValueError(
                f'{type(self).__name__} {what} in '
                f'{type(self.backbone).__name__}: check its sites / targets '
                'and sizes (e.g. sites=(), hidden_dim=0; use '
                'mmpetl.FrozenBackbone for a linear probe)')
        self._fingerprint: Optional[BackboneFingerprint] = None
        self.backbone_fingerprint()  # of the weights as loaded
        self._register_state_dict_hooks()
        self.checkpointing = self.backprop_through_backbone and any(
            getattr(m, 'with_cp', False) is True
            for m in self.backbone.modules())
        self.trainable_checked = False
        self.register_forward_pre_hook(
            first_forward_pre_hook, with_kwargs=True)

    def _build(self, cfg: dict) -> None:
        """Build the backbone from ``cfg`` and load its pre-trained weights
        now, into the stock layout, so that later checkpoints need not carry
        them."""
        # As from a config file: some backbones (mmdet's Swin) read their
        # init_cfg by attribute.
        self.backbone = MODELS.build(ConfigDict(cfg))
        self._pretrained_file = pretrained_file(cfg)
        self.new_layers: Dict[str, nn.Parameter] = {}
        if hasattr(self.backbone, 'init_weights'):
            self.new_layers = init_pretrained(
                self.backbone, self._pretrained_file, type(self).__name__)

    def _take_built(self, backbone: nn.Module) -> None:
        """Take a built backbone with its weights (see the class
        docstring)."""
        if isinstance(backbone, FrozenBackbone):
            raise TypeError(
                f'{type(self).__name__}: backbone is already wrapped (a '
                f'{type(backbone).__name__}); pass its stock backbone')
        self.backbone = backbone
        init_cfg = dict(init_cfg=getattr(backbone, 'init_cfg', None))
        self._pretrained_file = pretrained_file(init_cfg)
        if self._pretrained_file is not None and not getattr(
                backbone, 'is_init', True):
            raise PretrainedLoadError(
                f'{type(self).__name__}: the {type(backbone).__name__} given '
                f'built names pre-trained file {self._pretrained_file} in its '
                'init_cfg but was not initialised: call its init_weights() '
                'before wrapping it (or set its init_cfg to None if it holds '
                'weights loaded otherwise)')
        self.new_layers = {} if self._pretrained_file is None else \
            check_built(backbone, self._pretrained_file, type(self).__name__)
        if isinstance(backbone, BaseModule):
            # Its weights are final: a later init_weights() skips it.
            backbone._is_init = True

    def attach_adapters(self) -> None:
        """Add the method's trainable modules to the backbone, in steps that
        methods override (this one they never do):

        1. :meth:`find_sites`: the attach sites, from the site table;
        2. :meth:`build_shared`: the modules shared by the sites or run
           beside the backbone;
        3. per site, :meth:`build_adapter` then :meth:`wrap_site`: the
           site's adapter and the site module that replaces the stock one
           (no site module where ``build_adapter`` gives None: a shared
           module acts there, e.g. VPT's prompts).
        """
        self.attach_sites = self.find_sites()
        self.build_shared(self.attach_sites)
        for site in self.attach_sites:
            parent_path, _, child_name = site.path.rpartition('.')
            parent = self.backbone.get_submodule(parent_path)
            module = getattr(parent, child_name)
            try:
                adapter = self.build_adapter(site)
                if adapter is None:
                    continue
                adapted = self.wrap_site(site, module, adapter)
            except (ValueError, TypeError) as e:
                raise ValueError(f'{type(self).__name__}: site {site.path} '
                                 f'({site.kind}): {e}') from e
            setattr(parent, child_name, adapted)
        if self.attach_sites:
            print_log(
                f'{type(self).__name__}: {len(self.attach_sites)} adapters on '
                f'{type(self.backbone).__name__} sites '
                f'{sorted({s.kind for s in self.attach_sites})}',
                logger='current')

    def find_sites(self) -> List[AttachSite]:
        """The sites to adapt, in module order. None here."""
        return []

    def build_shared(self, sites: List[AttachSite]) -> None:
        """Build the modules that several sites share or that run beside
        the backbone, as attributes of the wrapper (they train, and are
        saved once). None here."""

    def build_adapter(self, site: AttachSite) -> Optional[PETLModule]:
        """The adapter of one site (input form: without shift where
        ``site.shift`` is False), or None where no module replaces the
        site's. None here."""
        return None

    def wrap_site(self, site: AttachSite, module: nn.Module,
                  adapter: PETLModule) -> AdaptedSite:
        """The site module that replaces ``module``, holding ``adapter``."""
        raise TypeError(f'{type(self).__name__} has no site type')

    def is_trainable_module(self, module: nn.Module) -> bool:
        """Whether ``module``, inside the backbone, trains: whether it is a
        :class:`PETLModule`."""
        return isinstance(module, PETLModule)

    def selected_parameters(self) -> Dict[str, nn.Parameter]:
        """Stock parameters of the backbone that train (parameter-selection
        methods: BitFit, LN-tuning), by name inside the backbone. None
        here."""
        return {}

    def trained_new_layers(self) -> Dict[str, nn.Parameter]:
        """Layers the toolbox adds that the pre-trained file has no values
        for (:data:`~mmpetl.models.pretrained_check.NEW_LAYERS`), by name
        inside the backbone: they train like the head. None where the
        backbone runs without autograd (they keep their init)."""
        return dict(self.new_layers) if self.backprop_through_backbone \
            else {}

    def trainable_prefixes(self) -> Tuple[str, ...]:
        """Backbone-relative paths (ending in ``.``) of the trainable
        modules."""
        return tuple(f'{name}.'
                     for name, module in self.backbone.named_modules()
                     if name and self.is_trainable_module(module))

    def freeze_backbone(self) -> None:
        """Freeze the backbone except its trainable modules and selected
        parameters. Inside the forward of FSDP with ``use_orig_params=True``
        (a mode switch of the first-step check) the parameters are views of
        FSDP's flat parameters, with the flags set before it wrapped them:
        nothing to re-apply there."""
        if not all(p.is_leaf for p in self.parameters()):
            return
        self.backbone.requires_grad_(False)
        for module in self.backbone.modules():
            if self.is_trainable_module(module):
                module.requires_grad_(True)
        for param in self.selected_parameters().values():
            param.requires_grad_(True)
        for param in self.trained_new_layers().values():
            param.requires_grad_(True)
        self._trainable_names = frozenset(
            n for n, p in self.named_parameters() if p.requires_grad)

    def trainable_parameter_names(self) -> FrozenSet[str]:
        """Names (in this module) of the parameters that train, as
        :meth:`freeze_backbone` last set them. The first-step check reads
        this list, not ``requires_grad``: inside the forward of FSDP with
        ``use_orig_params=True`` every parameter of a unit is a view of a
        flat parameter that requires grad, frozen ones included."""
        return self._trainable_names

    def train(self, mode: bool = True) -> 'FrozenBackbone':
        """Set the mode, then re-apply what trains and what stays frozen
        (see the class docstring)."""
        super().train(mode)
        self.freeze_backbone()
        trainable = self.trainable_prefixes()
        for name, module in self.backbone.named_modules():
            if isinstance(module, PETLModule):
                module.train(mode)
            elif isinstance(module, _STATEFUL_NORMS) and not (
                    name + '.').startswith(trainable):
                module.eval()
        return self

    def outputs_own_parameters(self) -> bool:
        """Whether some trainable parameters reach only some of the
        backbone's outputs (a model whose head reads a subset of them, e.g.
        a classifier on the last of several stages, then leaves those
        untrained: DDP must look for unused parameters). False here: every
        adapter lies in the backbone, upstream of its last output."""
        return False

    def merge_blockers(self) -> List[str]:
        """Why this model cannot be folded into the stock backbone: one line
        per blocker (a site that does not fold, a trainable module on no
        site); empty when it folds."""
        sites = adapted_sites(self.backbone)
        blockers = [
            f'{path}: {reason}' for path, site in sites.items()
            if (reason := site.not_mergeable_reason()) is not None
        ]
        held = {id(m) for site in sites.values() for m in site.modules()}
        blockers += [
            f'{name}: {type(m).__name__} is on no site that folds'
            for name, m in self.backbone.named_modules()
            if isinstance(m, PETLModule) and id(m) not in held
        ]
        return blockers

    def parameter_slices(
            self) -> Dict[str, List[Tuple[str, Any, nn.Module]]]:
        """Trainable parameters (by name in this wrapper) made of slices
        that one module each uses: ``{name: [(label, index, module)]}``,
        the slice ``param[index]`` reached through ``module``'s output. The
        first-step check proves every slice reached. None here."""
        return {}

    def check_trainable(self, *args, **kwargs) -> None:
        """Prove on ``self(*args, **kwargs)`` that every trainable parameter
        gets a gradient; see :func:`check_trainable_reached`."""
        check_trainable_reached(self, args, kwargs, owner=type(self).__name__)
        self.trainable_checked = True

    def frozen_state_keys(self) -> List[str]:
        """State-dict keys (relative to this module) of the frozen part."""
        trainable = self.trainable_prefixes()
        selected = {*self.selected_parameters(), *self.trained_new_layers()}
        return [
            f'backbone.{key}' for key in self.backbone.state_dict()
            if not key.startswith(trainable) and key not in selected
        ]

    def backbone_fingerprint(self) -> BackboneFingerprint:
        """Digest of the frozen weights and the pre-trained file's name."""
        if self._fingerprint is None:
            frozen = set(self.frozen_state_keys())
            state = self.backbone.state_dict(prefix='backbone.')
            weights = {k: v for k, v in state.items() if k in frozen}
            self._fingerprint = BackboneFingerprint(
                weights_digest(weights), self._pretrained_file)
        return self._fingerprint

    def forget_backbone_fingerprint(self) -> None:
        """Recompute the fingerprint when next needed (frozen weights were
        loaded)."""
        self._fingerprint = None

    def _register_state_dict_hooks(self) -> None:

        def drop_frozen(module, state_dict, prefix, local_metadata):
            if module.save_frozen:
                return
            for key in module.frozen_state_keys():
                state_dict.pop(prefix + key, None)

        def accept_missing_frozen(module, incompatible_keys):
            frozen = set(module.frozen_state_keys())
            missing = incompatible_keys.missing_keys
            for key in list(missing):
                # Keys are absolute; ours end with one of the frozen keys.
                if any(key.endswith(f) and
                       (len(key) == len(f) or key[-len(f) - 1] == '.')
                       for f in frozen):
                    missing.remove(key)

        self._register_state_dict_hook(drop_frozen)
        self.register_load_state_dict_post_hook(accept_missing_frozen)
        register_fingerprint_hooks(self)
        # Checkpoints record the wrapper's settings (load_adapter); the
        # pre-trained values of stock parameters it trains are kept for
        # disable_adapters() and unload().
        self._register_state_dict_hook(record_adapter_config)
        keep_stock_selected(self)

    def forward(self, *args, **kwargs):
        return self.backbone(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Heads and necks query backbone attributes (out_indices, ...).
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__('backbone'), name)
