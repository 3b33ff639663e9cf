# Copyright (c) mmpetl contributors. All rights reserved.
"""Run a merged (stock) checkpoint through the stock inferencer of its
toolbox, without mmpetl.

    python tools/deployment/inference.py merged_config.py merged.pth demo.jpg
    python tools/deployment/inference.py merged_config.py merged.pth a.jpg b.jpg \\
        --device cuda --out predictions.json

The toolbox is the config's ``default_scope``: mmpretrain
(``ImageClassificationInferencer``), mmseg (``MMSegInferencer``), mmdet
(``DetInferencer``) or mmaction (``ActionRecogInferencer``; a folder input
is read as raw frames, a file as a video). This script never imports mmpetl:
it shows that the merged model is the stock one. A checkpoint that does not
match the config key for key (e.g. an adapter checkpoint not merged yet) is
refused, where the inferencers alone would only warn.

Bad input: one error line, exit status 2; ``--out`` goes through mmpetl's
output guard (loaded without importing mmpetl, see ``deploy_outputs.py``):
written atomically, never over an input (the config and its bases, the
checkpoint, the input files and anything inside an input folder), over an
existing file only with ``--force``.
"""
import importlib
import importlib.util
import json
import os.path as osp
import re
import sys
import types

import numpy as np
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope
from mmengine.runner import CheckpointLoader

# The deployment tools' output guard and argument types, beside this file
# (which may be run with runpy, which does not put its folder on the path).
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from deploy_outputs import arguments, outputs, run_inputs  # noqa: E402
from deploy_outputs import InputError as GuardError  # noqa: E402

#: default_scope -> (module, inferencer class, checkpoint argument).
INFERENCERS = {
    'mmpretrain': ('mmpretrain', 'ImageClassificationInferencer',
                   'pretrained'),
    'mmseg': ('mmseg.apis', 'MMSegInferencer', 'weights'),
    'mmdet': ('mmdet.apis', 'DetInferencer', 'weights'),
    'mmaction': ('mmaction.apis.inferencers', 'ActionRecogInferencer',
                 'weights'),
}


class InputError(GuardError, ValueError):
    """An unusable input; the message says which and why."""


def parse_args(argv=None):
    parser = arguments.ToolParser(
        description='Run a merged checkpoint through a stock inferencer')
    parser.add_argument('config', type=arguments.existing_file,
                        help='the stock (merged) config')
    parser.add_argument('checkpoint', type=arguments.existing_file,
                        help='the merged checkpoint')
    parser.add_argument('inputs', nargs='+', type=arguments.existing_path,
                        help='images (videos, raw-frame folders for mmaction)')
    parser.add_argument('--device', type=arguments.device, default='cpu')
    parser.add_argument('--out', help='write the predictions here (JSON)')
    parser.add_argument(
        '--force', action='store_true',
        help='replace --out if it exists (never an input)')
    return parser.parse_args(argv)


def provide_missing_mmaction_drn() -> None:
    """mmaction2 1.2.0's PyPI wheel lacks ``mmaction/models/localizers/
    drn``, which ``mmaction.models`` imports, so no model builds. An empty
    stand-in module lets every model but DRN build.
    (``mmpetl.utils.compat`` does the same on ``import mmpetl``; this tool
    must not import mmpetl.)"""
    name = 'mmaction.models.localizers.drn'
    spec = importlib.util.find_spec('mmaction')
    if name in sys.modules or osp.isdir(
            osp.join(osp.dirname(spec.origin), *name.split('.')[1:])):
        return
    package, drn = types.ModuleType(name), types.ModuleType(f'{name}.drn')
    package.__path__, drn.DRN = [], None
    sys.modules.update({name: package, f'{name}.drn': drn})


def toolbox(config: str) -> str:
    """The config's ``default_scope``, one of :data:`INFERENCERS`."""
    if not osp.isfile(config):
        raise InputError(f'{config} does not exist')
    try:
        scope = Config.fromfile(config).get('default_scope')
    except Exception as e:
        raise InputError(f'cannot read config {config} ({e})')
    if scope not in INFERENCERS:
        raise InputError(f'config {config} has default_scope {scope!r}; '
                         f'supported: {", ".join(INFERENCERS)}')
    return scope


def build_inferencer(config: str, checkpoint: str, device: str = 'cpu',
                     inputs=()):
    """The stock inferencer of ``config``'s toolbox with ``checkpoint``
    loaded, after checking that the checkpoint holds exactly the model's
    keys. mmaction reads ``inputs`` as raw-frame folders or as videos."""
    scope = toolbox(config)
    if not osp.isfile(checkpoint):
        raise InputError(f'{checkpoint} does not exist')
    module, name, weights_arg = INFERENCERS[scope]
    if scope == 'mmaction':
        provide_missing_mmaction_drn()
    inferencer_cls = getattr(importlib.import_module(module), name)
    try:
        state = CheckpointLoader.load_checkpoint(checkpoint, 'cpu')
    except Exception as e:
        raise InputError(f'{checkpoint}: {load_failure(e)}')
    state = state.get('state_dict', state) if isinstance(state, dict) else {}
    kwargs = {weights_arg: checkpoint}
    if scope == 'mmaction':
        folders = {osp.isdir(path) for path in inputs}
        if len(folders) > 1:
            raise InputError('give either videos or raw-frame folders')
        kwargs['input_format'] = 'rawframes' if folders == {True} else 'video'
    inferencer = inferencer_cls(model=config, device=device, **kwargs)
    expected = set(inferencer.model.state_dict())
    missing, unexpected = expected - set(state), set(state) - expected
    if missing or unexpected:
        hint = (' (an adapter checkpoint? merge it first with '
                'tools/reparam.py)' if any('adapter' in k
                                           for k in unexpected) else '')
        raise InputError(
            f'checkpoint {checkpoint} does not match {config}: '
            f'{len(missing)} missing keys, {len(unexpected)} unexpected keys '
            f'({", ".join(sorted(unexpected or missing)[:3])}){hint}')
    return inferencer


def load_failure(error: Exception) -> str:
    """One line for a checkpoint that does not load: torch's refusal of a
    type outside its safe set (many lines, ending with how to load the file
    unsafely) is named as such."""
    unsafe = re.search(r'GLOBAL ([\w.]+)', str(error))
    if unsafe:
        return (f'it needs {unsafe.group(1)}, which a safe load refuses; a '
                'merged checkpoint holds none (an adapter checkpoint as '
                'training writes it? merge it first with tools/reparam.py)')
    message = str(error).strip().split('\n')[0]
    return f'not a checkpoint ({type(error).__name__}: {message})'


def run_inference(config: str, checkpoint: str, inputs, device='cpu'):
    """Predictions of the stock inferencer, one JSON-ready dict per input."""
    for path in inputs:
        if not osp.exists(path):
            raise InputError(f'input {path} does not exist')
    with DefaultScope.overwrite_default_scope(toolbox(config)):
        inferencer = build_inferencer(config, checkpoint, device, inputs)
        return [to_json(_prediction(inferencer, inferencer(path)))
                for path in inputs]


def _prediction(inferencer, result) -> dict:
    """One input's prediction as a dict, whatever the toolbox returns."""
    if isinstance(result, dict) and 'predictions' in result:
        result = result['predictions']
    if isinstance(result, list) and len(result) == 1:
        result = result[0]
    if isinstance(result, np.ndarray):  # mmseg: the map itself
        depth = 'Depth' in type(inferencer.model).__name__
        result = {'depth_map' if depth else 'sem_seg': result}
    return result


def to_json(value):
    """Arrays and tensors as nested lists, recursively."""
    if isinstance(value, (np.ndarray, torch.Tensor)):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    return value


def main(argv=None):
    args = parse_args(argv)
    inputs = run_inputs(args.config, args.checkpoint, *args.inputs)
    try:
        with outputs.protected_inputs(inputs):
            if args.out:
                outputs.check_output_path(args.out, args.force)
            predictions = run_inference(args.config, args.checkpoint,
                                        args.inputs, args.device)
            if args.out:
                outputs.write_text(
                    args.out, json.dumps(dict(zip(args.inputs, predictions))))
    except GuardError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    for path, prediction in zip(args.inputs, predictions):
        print(path, _summary(prediction))


def _summary(prediction: dict) -> str:
    """A prediction, long lists shown by their length."""
    return ', '.join(
        f'{k}: <{len(v)} items>' if isinstance(v, list) and len(v) > 5 else
        f'{k}: {v}' for k, v in prediction.items())


if __name__ == '__main__':
    main()
