# Copyright (c) mmpetl contributors. All rights reserved.
"""The wrapper of every method that places modules at the attach sites of
the site table: :class:`AdapterBackbone`."""
from abc import abstractmethod
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from mmpetl.utils.errors import InputError
from .adapted_linear import AdaptedLinear
from .adapted_module import AdaptedModule
from .adapter_backbone import BackboneArg, FrozenBackbone
from .attach_sites import (DEFAULT_SITES, AttachSite, _table_key,
                           find_attach_sites, normalize_sites, site_patterns)
from .output_affine import OutputAffineSite
from .petl import AdaptedSite, PETLModule
from .site_check import check_sites
from .weight_delta import DeltaLinear

__all__ = ['AdapterBackbone', 'AttachSite', 'BackboneArg',
           'UnsupportedBackboneError']


class UnsupportedBackboneError(InputError, ValueError):
    """A backbone that lacks a site kind the method needs."""


class AdapterBackbone(FrozenBackbone):
    """A frozen backbone with one :class:`AdaptedSite` at each attach site.

    The generic mechanism behind every method that places modules at the
    sites of the attach-site table (:mod:`mmpetl.models.attach_sites`). A
    method is one file: a :class:`PETLModule` and a subclass that sets

    - ``site_form``: the fold form of its sites, one of
      :data:`~mmpetl.models.attach_sites.SITE_FORMS` (``'input'``,
      ``'output'``, ``'delta'``, or ``'module'`` for the methods that do
      not fold);
    - ``default_sites``: the site kinds used when ``sites`` is not given;
      with ``requires_default_sites`` a backbone lacking one of them is
      refused in one line (:meth:`require_sites`; ``unsupported`` gives the
      reason per backbone), otherwise those the backbone has are used;

    passes its own arguments to ``super().__init__(..., settings=dict(...))``
    (set as attributes before the sites are built), and implements
    :meth:`build_adapter` (plus :meth:`build_shared` where sites share
    weights). :meth:`wrap_site` picks the site module of the form
    (input: :class:`AdaptedLinear`, or :class:`AdaptedModule` where the
    table names the module that applies the weight; output:
    :class:`~mmpetl.models.OutputAffineSite`; delta:
    :class:`~mmpetl.models.DeltaLinear`; module: ``site_type`` with the
    one line of :meth:`nonfoldable_reason`); a method overrides it only for
    a new site type. See :meth:`FrozenBackbone.attach_adapters` for the
    order of the steps.

    An input-affine site whose fold target has no bias
    (``qkv_bias=False``) gets an adapter without shift (``site.shift``
    False), so it folds exactly.

    ``check_input_shape`` runs the first-step checks (see
    :class:`FrozenBackbone`) at build time instead.

    Args:
        backbone (dict | nn.Module): The stock backbone, as a config or
            built (see :class:`FrozenBackbone`).
        sites (str | Sequence[str], optional): Site kinds from the
            attach-site table. Defaults to those of ``default_sites`` the
            backbone has (``('attn', 'ffn')`` for the input-affine methods;
            ConvNeXt: ``ffn``); ``'attn'`` is the attention-only variant.
        targets (dict, optional): ``{kind: regex}`` of module paths, or
            (input form) ``{kind: dict(module=regex, linear=path,
            bias_sink=names, ...)}`` (see
            :class:`~mmpetl.models.SiteSpec`), for a backbone the
            table does not know. Overrides ``sites``.
        check_input_shape (Sequence[int], optional): Input shape without
            batch (e.g. ``(3, 224, 224)``): check the sites now on a random
            input of that shape, not on the first training forward.
        save_frozen (bool): See :class:`FrozenBackbone`.
        init_cfg (dict, optional): See :class:`FrozenBackbone`.
        settings (dict, optional): See :class:`FrozenBackbone`.
    """

    #: The fold form of the method's sites (see :data:`SITE_FORMS`).
    site_form = 'input'
    #: The site kinds used when ``sites`` is not given.
    default_sites: Tuple[str, ...] = DEFAULT_SITES
    #: Whether a backbone must have every kind of ``default_sites`` (when
    #: neither ``sites`` nor ``targets`` is given).
    requires_default_sites = False
    #: ``{table key: why}`` of the backbones refused for lacking a default
    #: kind, and the reason for any other (empty: the table's own line).
    unsupported: Dict[str, str] = {}
    unsupported_reason = ''
    #: What to use instead, in that refusal.
    alternative = 'use mmpetl.AdaptFormerBackbone'
    #: The site module of the ``'module'`` form.
    site_type: Optional[type] = None
    unreached_fix = ('leave those sites out: name the ones before the last '
                     'of out_indices with targets=dict(kind=regex)')

    def __init__(self,
                 backbone: BackboneArg,
                 sites: Optional[Union[str, Sequence[str]]] = None,
                 targets: Optional[Dict[str, Any]] = None,
                 check_input_shape: Optional[Sequence[int]] = None,
                 save_frozen: bool = False,
                 init_cfg: Optional[dict] = None,
                 settings: Optional[Dict[str, Any]] = None):
        self.sites = normalize_sites(sites)
        self.targets = targets
        super().__init__(
            backbone,
            save_frozen=save_frozen,
            init_cfg=init_cfg,
            settings=settings)
        self.sites_checked = False
        if check_input_shape is not None:
            sample = torch.randn(1, *check_input_shape,
                                 generator=torch.Generator().manual_seed(0))
            self.check_trainable(sample)

    def find_sites(self) -> List[AttachSite]:
        """The sites of ``sites`` (or ``targets``, or the default kinds) in
        the backbone, in module order."""
        kinds = self.sites
        if kinds is None and self.targets is None and \
                self.requires_default_sites:
            kinds = self.require_sites(self.default_sites)
        return find_attach_sites(
            self.backbone,
            kinds,
            self.targets,
            form=self.site_form,
            default_sites=self.default_sites,
            method=type(self).__name__)

    def require_sites(self, kinds: Sequence[str]) -> Tuple[str, ...]:
        """``kinds``, if the backbone's table row has every one of them;
        otherwise refuse the backbone in one line (the method would be
        another method without them)."""
        key = _table_key(type(self.backbone))
        reason = self.unsupported.get(key, self.unsupported_reason)
        try:
            table = site_patterns(self.backbone)
        except KeyError:
            if not reason:
                raise
            table = {}
        if reason and not set(kinds) <= set(table):
            raise UnsupportedBackboneError(
                f'{type(self).__name__} does not support {key}: {reason}; '
                f'{self.alternative}')
        return tuple(kinds)

    @abstractmethod
    def build_adapter(self, site: AttachSite) -> Optional[PETLModule]:
        """The adapter for one attach site; without shift where
        ``site.shift`` is False."""

    def nonfoldable_reason(self, site: AttachSite) -> str:
        """Why a ``'module'``-form site of this method does not fold, in
        one line naming the method."""
        return (f'{type(self).__name__} does not fold into the stock '
                'backbone; deploy the adapter checkpoint with its mmpetl '
                'config')

    def wrap_site(self, site: AttachSite, module: nn.Module,
                  adapter: PETLModule) -> AdaptedSite:
        """The site module of ``site.form`` that replaces ``module``."""
        if site.form == 'output':
            return OutputAffineSite(module, adapter)
        if site.form == 'delta':
            return DeltaLinear(module, adapter)
        if site.form == 'module':
            return self.site_type(module, adapter,
                                  self.nonfoldable_reason(site))
        if adapter.has_shift and not site.shift:
            raise ValueError(
                f'{type(self).__name__}.build_adapter gave site '
                f'{site.path} an adapter with a shift; the site takes '
                'none (site.shift is False)')
        if site.linear:
            return AdaptedLinear(module, adapter)
        return AdaptedModule(module, adapter, site.fold_target, site.inputs)

    def check_trainable(self, *args, **kwargs) -> None:
        """The site check (every adapter runs and folds: the more specific
        diagnosis) first, then the gradient check."""
        self.check_sites(*args, **kwargs)
        super().check_trainable(*args, **kwargs)

    def check_sites(self, *args, **kwargs) -> Dict[str, float]:
        """Prove on ``self.backbone(*args, **kwargs)`` that every adapter
        runs and folds exactly; see :func:`check_sites`."""
        errors = check_sites(
            self.backbone,
            *args,
            owner=type(self).__name__,
            form=self.site_form,
            mode_module=self,
            **kwargs)
        self.sites_checked = True
        return errors

    def site_table(self) -> List[Dict[str, str]]:
        """One row per site module: ``path``, ``kind``, ``share_group``,
        ``width`` and ``fold`` (its fold form and target), for logs."""
        rows = []
        for site in self.attach_sites:
            module = self.backbone.get_submodule(site.path)
            if not isinstance(module, AdaptedSite):
                continue  # a shared module acts there (VPT's prompts)
            fold = f'{module.fold_form}: {module.describe_fold()}'
            if site.form == 'input' and not site.shift:
                fold += ' (adapter without shift)'
            rows.append(
                dict(
                    path=site.path,
                    kind=site.kind,
                    share_group=site.share_group,
                    width=str(site.in_features),
                    fold=fold))
        return rows
