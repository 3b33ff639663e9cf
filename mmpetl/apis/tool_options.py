# Copyright (c) mmpetl contributors. All rights reserved.
"""The options of ``tools/train.py`` and ``tools/test.py`` applied to a
config, with mmpretrain's meanings, for a config of any toolbox, and the
checks that run before a Runner is built.

Deviations from mmpretrain's tools, which serve only mmpretrain:

* dataloaders get ``persistent_workers=True`` by default only when they
  have workers (torch rejects it with ``num_workers=0``) and
  ``pin_memory=True`` only when CUDA is available (it does nothing
  without); ``collate_fn`` is left as the config has it (mmdet and mmseg
  need mmengine's default, ``pseudo_collate``).
* ``--show`` / ``--show-dir`` set the options that the config's own
  visualization hook takes (mmpretrain's and mmaction2's ``enable`` and
  ``out_dir``, mmseg's and mmdet's ``draw``, mmdet's ``test_out_dir``; for
  mmseg the visualizer's ``save_dir``).
* ``--tta`` uses the config's ``tta_model`` and ``tta_pipeline``; only
  mmpretrain configs get a default (flip, scores averaged), as in
  mmpretrain.
"""
import copy
import difflib
import inspect
import os
import os.path as osp
import re
from contextlib import ExitStack, contextmanager
from typing import Any, Iterator, Optional, Sequence

import torch
from mmengine.config import Config, ConfigDict
from mmengine.evaluator import DumpResults
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.registry import HOOKS
from torch import nn

from ..fileio.errors import CheckpointError, first_line
from ..fileio.outputs import atomic_output, check_output_path, dump
from ..fileio.state_dicts import (check_tensor_kinds,
                                  load_matching_state_dict, model_state_dict)
from ..utils.log_utils import log_to_file, temporary_log_file

DATALOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')
#: File formats ``mmengine.dump`` writes, for ``--out --out-item metrics``.
METRICS_FORMATS = ('.json', '.yaml', '.yml', '.pkl', '.pickle')


def set_work_dir(cfg: Config, work_dir: Optional[str], config: str) -> None:
    """``work_dir``: the option, else the config's, else
    ``./work_dirs/<config name>``."""
    if work_dir is not None:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(config))[0])


def set_dataloader_defaults(cfg: Config,
                            no_pin_memory: bool = False,
                            no_persistent_workers: bool = False,
                            fields: Sequence[str] = DATALOADERS) -> None:
    """mmpretrain's dataloader defaults (config values win) and its
    ``--no-pin-memory`` / ``--no-persistent-workers`` (they win over the
    config)."""
    for field in fields:
        loader = cfg.get(field, None)
        if loader is None:
            continue
        defaults = dict(pin_memory=torch.cuda.is_available())
        if loader.get('num_workers', 0) > 0:
            defaults['persistent_workers'] = True
        loader = ConfigDict(defaults, **loader)
        if no_pin_memory:
            loader.pin_memory = False
        if no_persistent_workers:
            loader.persistent_workers = False
        cfg[field] = loader


def enable_test_amp(cfg: Config) -> None:
    """``--amp`` of tools/test.py: the test loop runs under autocast
    (float16 on GPUs, bfloat16 on CPUs)."""
    cfg.test_cfg = ConfigDict(cfg.get('test_cfg', None) or {}, fp16=True)


def enable_visualization(cfg: Config,
                         show: bool = False,
                         show_dir: Optional[str] = None,
                         interval: int = 1,
                         wait_time: float = 2.) -> None:
    """``--show`` / ``--show-dir``: turn on the config's visualization hook
    (``default_hooks.visualization``), drawing every ``interval``-th sample,
    shown in a window for ``wait_time`` seconds and/or saved to
    ``show_dir`` (relative to the run's ``work_dir/<timestamp>`` for
    mmpretrain and mmdet hooks, as in their tools)."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise CheckpointError(
            '--show/--show-dir need a visualization hook in the config: add '
            "default_hooks = dict(visualization=dict(type='VisualizationHook'"
            '))')
    hook_cls = hook['type']
    if isinstance(hook_cls, str):
        with HOOKS.switch_scope_and_registry(
                cfg.get('default_scope')) as registry:
            hook_cls = registry.get(hook_cls)
    if hook_cls is None:
        raise CheckpointError(f'unknown visualization hook {hook["type"]}')
    takes = inspect.signature(hook_cls.__init__).parameters
    if any(p.kind is p.VAR_KEYWORD for p in takes.values()):
        # mmpretrain's hook passes its other arguments to the visualizer.
        takes = dict(takes, wait_time=None)
    options = dict(enable=True, draw=True, show=show, wait_time=wait_time,
                   interval=interval)
    if show_dir is not None:
        options.update(out_dir=show_dir, test_out_dir=show_dir)
        if 'out_dir' not in takes and 'test_out_dir' not in takes:
            cfg.visualizer.save_dir = show_dir
    hook.update({k: v for k, v in options.items() if k in takes})


def enable_tta(cfg: Config) -> None:
    """``--tta``: test ``cfg.tta_model`` around the model on
    ``cfg.tta_pipeline``. mmpretrain configs without them get mmpretrain's
    defaults: scores averaged over the image and its horizontal flip."""
    if cfg.get('default_scope') == 'mmpretrain':
        if 'tta_model' not in cfg:
            cfg.tta_model = dict(type='mmpretrain.AverageClsScoreTTA')
        if 'tta_pipeline' not in cfg:
            pipeline = copy.deepcopy(cfg.test_dataloader.dataset.pipeline)
            pipeline[-1] = dict(
                type='TestTimeAug',
                transforms=[[
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ], [pipeline[-1]]])
            cfg.tta_pipeline = pipeline
    missing = [k for k in ('tta_model', 'tta_pipeline') if k not in cfg]
    if missing:
        raise CheckpointError(f'--tta needs {" and ".join(missing)} in the '
                              'config')
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


#: Names of the files a training run writes in its work dir, besides the
#: config dump: checkpoints (``CheckpointHook``), merged checkpoints and
#: configs (``ReparamCheckpointHook``) and the checkpoint check's log.
RUN_FILE_NAMES = re.compile(
    r'(epoch|iter)_\d+(\.pth|_merged\.pth|_merged_config\.py)|best_.*\.pth|'
    r'last_checkpoint|checkpoint_check(_rank\d+)?\.log')


def check_run_outputs(cfg: Config,
                      config: str,
                      inputs: Sequence[str],
                      trains: bool,
                      resume_from: Optional[str] = None) -> None:
    """Before a Runner is built: the work dir can be made and written, and
    what the run writes there cannot replace one of ``inputs`` (the files
    of :func:`~mmpetl.fileio.configs.run_input_files`, computed with
    every option applied): not the config dump (``work_dir/<config
    name>``), and when it ``trains``, no input lies in the work dir under a
    name the run writes (:data:`RUN_FILE_NAMES`), except ``resume_from``,
    which a resumed run reads and never writes again. Inputs are compared with
    ``os.path.samefile``; during the run :func:`protected_inputs` guards
    every write."""
    work_dir = osp.abspath(cfg.work_dir)
    dump = osp.join(work_dir, osp.basename(config))
    check_output_path(dump, True, *inputs, make_folder=True)
    if not trains:
        return
    for path in inputs:
        if not osp.exists(path) or (
                resume_from and osp.exists(resume_from)
                and osp.samefile(path, resume_from)):
            continue
        if RUN_FILE_NAMES.fullmatch(osp.basename(path)) and osp.samefile(
                osp.dirname(osp.abspath(path)), work_dir):
            raise CheckpointError(
                f'input {path} is in the work dir {cfg.work_dir} under a name '
                'that training writes; move it or choose another --work-dir')


def check_out_path(out: Optional[str], out_item: Optional[str]) -> None:
    """``--out`` / ``--out-item``: predictions go to a pickle, metrics to
    any format ``mmengine.dump`` writes; the folder must exist."""
    if out is None:
        if out_item is not None:
            raise CheckpointError('--out-item needs --out FILE')
        return
    ext = osp.splitext(out)[1].lower()
    if out_item == 'metrics':
        if ext not in METRICS_FORMATS:
            raise CheckpointError(f'--out {out}: metrics are written as '
                                  f'{", ".join(METRICS_FORMATS)}')
    elif ext not in ('.pkl', '.pickle'):
        raise CheckpointError(f'--out {out}: predictions are written as a '
                              'pickle (.pkl)')
    folder = osp.dirname(osp.abspath(out))
    if not osp.isdir(folder):
        raise CheckpointError(f'--out {out}: folder {folder} does not exist')


@contextmanager
def dump_predictions(runner, out: Optional[str]) -> Iterator[None]:
    """Around ``runner.test()``: with ``out``, rank 0 writes the
    predictions there (mmengine's ``DumpResults``), atomically."""
    if out is None:
        yield
        return
    with ExitStack() as stack:
        # Every rank gathers; only rank 0 writes.
        path = stack.enter_context(atomic_output(out)) \
            if runner.rank == 0 else out
        runner.test_evaluator.metrics.append(DumpResults(out_file_path=path))
        yield


def write_metrics(metrics: dict,
                  path: str,
                  file_format: Optional[str] = None) -> None:
    """Write ``metrics`` atomically with ``mmengine.dump``, as
    ``file_format`` or by ``path``'s extension (a failed write is one
    :class:`~mmpetl.fileio.errors.OutputError` line)."""
    dump(metrics, path, file_format)


def checked_log_file(log_file: Optional[str], force: bool,
                     inputs: Sequence[str], prefix: str) -> str:
    """``--log-file`` checked by the output guard before it is opened (not
    an input of the run, an existing file only with ``--force``, a
    writable folder), or without one, a new file in the temporary
    directory."""
    if log_file is None:
        return temporary_log_file(prefix)
    check_output_path(log_file, force, *inputs, make_folder=True)
    return log_file


def check_arch(backbone: str, arch: Any) -> None:
    """``--backbone`` is a registered model and ``--arch`` one of its
    ``arch_zoo`` names (or a dict of its fields), in one
    :class:`~mmpetl.fileio.errors.CheckpointError` line otherwise."""
    from mmengine.registry import MODELS as ROOT_MODELS
    try:
        cls = ROOT_MODELS.get(backbone)
    except Exception:  # e.g. an unknown scope
        cls = None
    if cls is None:
        raise CheckpointError(f'--backbone {backbone} is not a registered '
                              'model (e.g. mmpretrain.VisionTransformer)')
    zoo = getattr(cls, 'arch_zoo', None)
    if isinstance(arch, str) and zoo is not None and arch not in zoo:
        raise CheckpointError(
            f'--arch {arch}: {backbone} knows {", ".join(sorted(zoo))}, or a '
            'JSON object of its fields')


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP-like wrappers and test-time-augmentation
    models."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model


_NOT_REGISTERED = re.compile(r'(\S+) is not in the (\S+)::(\S+) registry')


def _did_you_mean(error: BaseException) -> str:
    """For a registry's "X is not in the scope::models registry", the
    closest registered names, as ``; did you mean ...?``."""
    from mmengine.registry import MODELS as ROOT_MODELS
    found = _NOT_REGISTERED.search(str(error))
    if not found:
        return ''
    name = found.group(1).split('.')[-1]
    names, todo = set(), [ROOT_MODELS]
    while todo:
        registry = todo.pop()
        names.update(registry.module_dict)
        todo.extend(registry.children.values())
    close = difflib.get_close_matches(name, sorted(names), n=3)
    return f'; did you mean {" or ".join(close)}?' if close else ''


def build_checked_model(cfg: Config) -> nn.Module:
    """Build ``cfg.model`` (test-time-augmentation and DDP wrappers taken
    off), as a check before any Runner is built: a failure is one
    :class:`CheckpointError` line (a misspelt ``type`` with the closest
    registered names; a PETL wrapper that would train nothing, e.g.
    ``sites=()``, ``hidden_dim=0``, refuses to build)."""
    from .reparam import build_model
    try:
        return unwrap_model(build_model(cfg))
    except Exception as e:  # e.g. an unknown type or site kind
        raise CheckpointError(f'cannot build the model of the config '
                              f'({first_line(e)}{_did_you_mean(e)})')


def check_checkpoint_matches(cfg: Config,
                             checkpoint: Optional[dict],
                             source: Optional[str],
                             strict: bool = True,
                             inputs: Sequence[str] = ()) -> None:
    """Build ``cfg.model`` (:func:`build_checked_model`) and load
    ``checkpoint`` (if any) into it, strictly (the runner alone would only
    warn), before any Runner is built: a mismatch is a
    :class:`CheckpointError` before the data and the runner are set up.
    Without ``strict`` (``load_from`` for training, which mmengine loads
    key by key where they match) only its tensors are checked
    (:func:`~mmpetl.fileio.state_dicts.check_tensor_kinds`). The build's log
    (init records) goes to ``work_dir/checkpoint_check.log`` (``_rank<N>``
    added on ranks > 0), which never replaces one of ``inputs`` (nor a
    protected input, :func:`~mmpetl.fileio.outputs.protected_inputs`)."""
    rank = int(os.environ.get('RANK', 0))
    log_file = osp.join(cfg.work_dir, 'checkpoint_check' +
                        (f'_rank{rank}' if rank else '') + '.log')
    check_output_path(log_file, True, *inputs, make_folder=True)
    with log_to_file(log_file):
        model = build_checked_model(cfg)
        if checkpoint is None:
            return
        state_dict = model_state_dict(checkpoint)
        if strict:
            load_matching_state_dict(model, state_dict, source)
        else:
            check_tensor_kinds(model, state_dict, source)
