# Copyright (c) mmpetl contributors. All rights reserved.
"""Export a merged (stock) checkpoint to ONNX with torch.onnx, without
mmpetl, and optionally check onnxruntime against PyTorch.

    python tools/deployment/pytorch2onnx.py merged_config.py merged.pth model.onnx \\
        --shape 1 3 224 224 --verify

The graph is the model's ``forward(x, mode='tensor')`` (a classifier's
logits, a recognizer's class scores) on the *preprocessed* input: the data
preprocessor (mean / std, channel order) is not part of it. The checkpoint
must match the config key for key. ``--verify`` runs onnxruntime and PyTorch
on one random input and fails above ``--tolerance`` (absolute), and reports
the graph's initializers against the model's parameters and buffers.

Bad input: one error line, exit status 2; the output is written atomically,
never over the config or the checkpoint, and not replaced without
``--force``.
"""
import os.path as osp
import sys
from typing import Optional

import torch
from mmengine.config import Config
from mmengine.registry import MODELS, init_default_scope
from mmengine.runner import load_checkpoint
from torch import nn

# The deployment tools' output guard and argument types, beside this file
# (which may be run with runpy, which does not put its folder on the path).
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from deploy_outputs import InputError, arguments, outputs  # noqa: E402
from deploy_outputs import run_inputs  # noqa: E402


class ExportError(InputError, ValueError):
    """An unusable input, or a failed check; the message says why."""


def parse_args(argv=None):
    parser = arguments.ToolParser(
        description='Export a merged checkpoint to ONNX')
    parser.add_argument('config', type=arguments.existing_file,
                        help='the stock (merged) config')
    parser.add_argument('checkpoint', type=arguments.existing_file,
                        help='the merged checkpoint')
    parser.add_argument('out', help='the .onnx file to write')
    parser.add_argument(
        '--shape',
        type=arguments.positive_int,
        nargs='+',
        default=[1, 3, 224, 224],
        help='input shape with the batch, e.g. 1 3 224 224 (video: '
        'N C T H W, or N clips C T H W as the recognizer takes them)')
    parser.add_argument('--opset', type=arguments.positive_int, default=17)
    parser.add_argument('--verify', action='store_true')
    parser.add_argument('--tolerance', type=arguments.positive_float,
                        default=1e-4)
    parser.add_argument('--force', action='store_true',
                        help='replace OUT if it exists (never an input)')
    return parser.parse_args(argv)


def load_stock_model(config: str, checkpoint: str) -> nn.Module:
    """The config's model with the checkpoint loaded strictly, in eval
    mode."""
    for path in (config, checkpoint):
        if not osp.isfile(path):
            raise ExportError(f'{path} does not exist')
    try:
        cfg = Config.fromfile(config)
    except Exception as e:
        raise ExportError(f'cannot read config {config} ({e})')
    init_default_scope(cfg.get('default_scope', 'mmengine'))
    model = MODELS.build(cfg.model)
    try:
        load_checkpoint(model, checkpoint, map_location='cpu', strict=True,
                        logger='silent')
    except Exception as e:
        message = str(e).strip().split('\n')
        raise ExportError(
            f'checkpoint {checkpoint} does not match {config} '
            f'({" ".join(line.strip() for line in message[:3])})')
    return model.eval()


def export_onnx(model: nn.Module,
                inputs: torch.Tensor,
                out: str,
                opset: int = 17,
                tolerance: Optional[float] = None) -> Optional[float]:
    """Export ``model(inputs, mode='tensor')`` to ``out``, with the
    TorchScript exporter: initializers keep the parameter names (parameters
    holding identical values are stored once). The batch size is dynamic;
    the other sizes are those of ``inputs``.

    With ``tolerance``, onnxruntime is checked against PyTorch on
    ``inputs`` first and nothing is written above it. The file appears only
    when complete (temporary file, then rename).

    Returns:
        float | None: With ``tolerance``, ``max |onnxruntime - PyTorch|``.
    """
    diff = None
    with outputs.atomic_output(out) as tmp:
        with torch.no_grad():
            torch.onnx.export(
                model.eval(), (inputs, ),
                tmp,
                kwargs=dict(mode='tensor'),
                dynamo=False,
                opset_version=opset,
                do_constant_folding=False,
                input_names=['inputs'],
                dynamic_axes={'inputs': {0: 'batch'}})
        if tolerance is not None:
            diff = onnx_max_abs_difference(model, tmp, inputs)
            if diff > tolerance:
                raise ExportError(
                    f'verification failed: onnxruntime and PyTorch differ by '
                    f'{diff:.3g} (> {tolerance:g}); nothing written')
    return diff


def onnx_max_abs_difference(model: nn.Module, path: str,
                            inputs: torch.Tensor) -> float:
    """``max |onnxruntime - PyTorch|`` over all outputs."""
    import onnxruntime
    session = onnxruntime.InferenceSession(
        path, providers=['CPUExecutionProvider'])
    actual = session.run(None, {'inputs': inputs.numpy()})
    with torch.no_grad():
        expected = model.eval()(inputs, mode='tensor')
    if isinstance(expected, torch.Tensor):
        expected = [expected]
    if len(expected) != len(actual):
        raise ExportError(f'onnxruntime gives {len(actual)} outputs, '
                          f'PyTorch {len(expected)}')
    return max(
        float((torch.from_numpy(a) - e).abs().max())
        for a, e in zip(actual, expected))


def initializer_elements(path: str) -> int:
    """Elements of the graph's floating-point initializers."""
    import onnx
    from onnx import TensorProto, numpy_helper
    floating = {TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
                TensorProto.BFLOAT16}
    return sum(
        numpy_helper.to_array(t).size
        for t in onnx.load(path).graph.initializer
        if t.data_type in floating)


def main(argv=None):
    args = parse_args(argv)
    try:
        outputs.check_output_path(args.out, args.force,
                                  *run_inputs(args.config, args.checkpoint))
        model = load_stock_model(args.config, args.checkpoint)
        inputs = torch.randn(*args.shape,
                             generator=torch.Generator().manual_seed(0))
        diff = export_onnx(model, inputs, args.out, args.opset,
                           args.tolerance if args.verify else None)
        print(f'wrote {args.out}')
        if args.verify:
            params = sum(p.numel() for p in model.parameters())
            buffers = sum(b.numel() for b in model.buffers()
                          if b.is_floating_point())
            print(f'initializers: {initializer_elements(args.out):,} '
                  f'elements; model: {params:,} parameters, {buffers:,} '
                  'floating-point buffer elements')
            print(f'verified: max |onnxruntime - PyTorch| = {diff:.3g} <= '
                  f'{args.tolerance:g}')
    except InputError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except OSError as e:  # a full disk, a removed folder: nothing written
        print(f'error: cannot write {args.out} ({e})', file=sys.stderr)
        sys.exit(2)


if __name__ == '__main__':
    main()
