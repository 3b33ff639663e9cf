# Copyright (c) mmpetl contributors. All rights reserved.
from abc import abstractmethod
from typing import Any, Dict, List, Optional, Sequence, Union

import torch
from mmengine.config import ConfigDict
from mmengine.logging import print_log
from mmengine.model import BaseModule
from torch import nn

from mmpetl.fingerprint import (BackboneFingerprint, pretrained_file,
                                register_fingerprint_hooks, weights_digest)
from mmpetl.registry import MODELS
from .adapted_linear import AdaptedLinear
from .adapted_module import AdaptedModule
from .attach_sites import AttachSite, find_attach_sites, normalize_sites
from .mergeable_adapter import MergeableAdapter
from .site_check import check_sites, first_forward_pre_hook

__all__ = ['FrozenBackbone', 'AdapterBackbone', 'AttachSite']


@MODELS.register_module()
class FrozenBackbone(BaseModule):
    """A stock backbone, pre-trained and frozen.

    Builds ``backbone`` from its config and loads its pre-trained weights
    (its ``init_cfg``) at construction, then freezes every parameter of it.
    Modules that a subclass adds (adapters inside the backbone, modules owned
    by the wrapper) are trainable; the trainable set is decided by module
    type, never by parameter names.

    Checkpoints hold only what trains: a state-dict hook drops the frozen
    backbone's entries, and a load hook accepts their absence, so loading an
    adapter checkpoint onto the pre-trained backbone restores the model.
    They also hold the backbone's fingerprint (digest of the frozen weights
    as loaded, and the pre-trained file's name), checked when a state dict
    is loaded: see :mod:`mmpetl.fingerprint`.

    With no adapters this is the linear-probe baseline, and the floor that
    no adapter method's training cost can go below.

    Args:
        backbone (dict): Config of the stock backbone, e.g.
            ``dict(type='VisionTransformer', arch='b', init_cfg=dict(
            type='Pretrained', checkpoint='vit-b.pth'))``.
        save_frozen (bool): Keep the frozen weights in checkpoints too.
            Defaults to False.
        init_cfg (dict, optional): Init config of the wrapper's own modules.
    """

    def __init__(self,
                 backbone: dict,
                 save_frozen: bool = False,
                 init_cfg: Optional[dict] = None):
        super().__init__(init_cfg)
        # As from a config file: some backbones (mmdet's Swin) read their
        # init_cfg by attribute.
        self.backbone = MODELS.build(ConfigDict(backbone))
        if hasattr(self.backbone, 'init_weights'):
            # Load the pre-trained weights now, into the stock layout, so
            # that later checkpoints need not carry them.
            self.backbone.init_weights()
        self.save_frozen = save_frozen
        self.attach_adapters()
        self.freeze_backbone()
        self._pretrained_file = pretrained_file(backbone)
        self._fingerprint: Optional[BackboneFingerprint] = None
        self.backbone_fingerprint()  # of the weights as loaded
        self._register_state_dict_hooks()

    def attach_adapters(self) -> None:
        """Add trainable modules to the backbone. None here."""

    def is_trainable_module(self, module: nn.Module) -> bool:
        """Whether ``module``, inside the backbone, trains."""
        return isinstance(module, MergeableAdapter)

    def freeze_backbone(self) -> None:
        """Freeze the backbone except its trainable modules."""
        self.backbone.requires_grad_(False)
        for module in self.backbone.modules():
            if self.is_trainable_module(module):
                module.requires_grad_(True)

    def frozen_state_keys(self) -> List[str]:
        """State-dict keys (relative to this module) of the frozen part."""
        trainable = [
            f'backbone.{name}.' for name, module in
            self.backbone.named_modules() if self.is_trainable_module(module)
        ]
        return [
            f'backbone.{key}' for key in self.backbone.state_dict()
            if not any(f'backbone.{key}'.startswith(p) for p in trainable)
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

    def forward(self, *args, **kwargs):
        return self.backbone(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        # Heads and necks query backbone attributes (out_indices, ...).
        try:
            return super().__getattr__(name)
        except AttributeError:
            return getattr(super().__getattr__('backbone'), name)


class AdapterBackbone(FrozenBackbone):
    """A frozen backbone with one adapter at each attach site.

    The generic mechanism behind every mergeable method: it finds the sites
    (:mod:`mmpetl.models.attach_sites`), replaces each target linear by an
    :class:`AdaptedLinear` holding ``self.build_adapter(site)`` (or, where
    the table names the module that applies the weight, that module by an
    :class:`AdaptedModule`), and freezes the rest. A method is a subclass
    that implements :meth:`build_adapter`.

    Before the first optimizer step (on the first training-mode forward,
    inside DDP and AMP alike) it proves that every adapter runs and folds
    exactly (:func:`~mmpetl.models.site_check.check_sites`, on one sample),
    and stops with :class:`~mmpetl.models.site_check.AttachSiteError`
    otherwise. ``check_input_shape`` runs that check at build time instead.

    Args:
        backbone (dict): Config of the stock backbone.
        sites (str | Sequence[str], optional): Site kinds from the
            attach-site table. Defaults to those of ``('attn', 'ffn')`` the
            backbone has (ConvNeXt: ``ffn``); ``'attn'`` is the
            attention-only variant.
        targets (dict, optional): ``{kind: regex}`` of linear paths, or
            ``{kind: dict(module=regex, linear=path, bias_sink=names, ...)}``
            (see :class:`~mmpetl.models.ModuleInputSite`), for a backbone the
            table does not know. Overrides ``sites``.
        check_input_shape (Sequence[int], optional): Input shape without
            batch (e.g. ``(3, 224, 224)``): check the sites now on a random
            input of that shape, not on the first training forward.
        save_frozen (bool): See :class:`FrozenBackbone`.
        init_cfg (dict, optional): See :class:`FrozenBackbone`.
    """

    def __init__(self,
                 backbone: dict,
                 sites: Optional[Union[str, Sequence[str]]] = None,
                 targets: Optional[Dict[str, Any]] = None,
                 check_input_shape: Optional[Sequence[int]] = None,
                 save_frozen: bool = False,
                 init_cfg: Optional[dict] = None):
        self.sites = normalize_sites(sites)
        self.targets = targets
        super().__init__(backbone, save_frozen=save_frozen, init_cfg=init_cfg)
        self.sites_checked = False
        self.register_forward_pre_hook(
            first_forward_pre_hook, with_kwargs=True)
        if check_input_shape is not None:
            self.check_sites(
                torch.randn(1, *check_input_shape,
                            generator=torch.Generator().manual_seed(0)))

    @abstractmethod
    def build_adapter(self, site: AttachSite) -> MergeableAdapter:
        """The adapter for one attach site; without shift (``has_shift``
        False) where ``site.shift`` is False."""

    def attach_adapters(self) -> None:
        self.attach_sites = find_attach_sites(self.backbone, self.sites,
                                              self.targets)
        for site in self.attach_sites:
            parent_path, _, child_name = site.path.rpartition('.')
            parent = self.backbone.get_submodule(parent_path)
            module = getattr(parent, child_name)
            adapter = self.build_adapter(site)
            if adapter.has_shift and not site.shift:
                raise ValueError(
                    f'{type(self).__name__}.build_adapter gave site '
                    f'{site.path} an adapter with a shift; the site takes '
                    'none (site.shift is False)')
            if site.linear:
                adapted = AdaptedLinear(module, adapter)
            else:
                adapted = AdaptedModule(module, adapter, site.fold_target,
                                        site.inputs)
            setattr(parent, child_name, adapted)
        print_log(
            f'{type(self).__name__}: {len(self.attach_sites)} adapters on '
            f'{type(self.backbone).__name__} sites '
            f'{sorted({s.kind for s in self.attach_sites})}',
            logger='current')

    def check_sites(self, *args, **kwargs) -> Dict[str, float]:
        """Prove on ``self.backbone(*args, **kwargs)`` that every adapter
        runs and folds exactly; see :func:`check_sites`."""
        errors = check_sites(
            self.backbone, *args, owner=type(self).__name__, **kwargs)
        self.sites_checked = True
        return errors

    def site_table(self) -> List[Dict[str, str]]:
        """One row per site: ``path``, ``kind``, ``share_group``, ``width``
        and ``fold`` (its fold target), for logs."""
        rows = []
        for site in self.attach_sites:
            module = self.backbone.get_submodule(site.path)
            fold = module.describe_fold()
            if not site.shift:
                fold += ' (adapter without shift)'
            rows.append(
                dict(
                    path=site.path,
                    kind=site.kind,
                    share_group=site.share_group,
                    width=str(site.in_features),
                    fold=fold))
        return rows
