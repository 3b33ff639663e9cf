# Copyright (c) mmpetl contributors. All rights reserved.
"""Inference latency of a stock backbone and of every method on it: each
method's adapters unmerged and, where the method folds, merged; all models
timed in one run, interleaved, at each batch size, as ratios to stock.

    python tools/benchmarks/inference.py                 # ViT-B/16, 224x224
    python tools/benchmarks/inference.py --batch-size 1 8 --rounds 30
    python tools/benchmarks/inference.py --method repadapter adaptformer \
        --device cuda
    python tools/benchmarks/inference.py --backbone mmpretrain.SwinTransformer
    python tools/benchmarks/inference.py --model videomae-vit-b  # 16x224x224

The methods are those of :data:`mmpetl.benchmarks.methods.METHODS` at the
papers' defaults; one that does not apply to the backbone (Mona off Swin,
VPT / Convpass on Swin) is listed under the table with the reason its
wrapper refused it. Trainable parameters are drawn from N(0, 0.02)
(trained-looking, not the identity); the stock weights are random (the
structure, not the values, sets the latency; nothing is downloaded) and
shared by all models, one copy in memory.
"""
import copy
import json
import statistics

import torch
from mmengine.logging import MMLogger
from torch import nn

import mmpetl  # noqa: F401
from mmpetl.apis.reparam import example_inputs
from mmpetl.apis.tool_options import check_arch
from mmpetl.benchmarks.latency import BENCHMARK_MODELS, time_rounds
from mmpetl.benchmarks.methods import METHODS
from mmpetl.models import FrozenBackbone, ModuleSite
from mmpetl.models.merge import merge_adapters, merge_blockers
from mmpetl.registry import MODELS
from mmpetl.utils import InputError
from mmpetl.utils.arguments import (ToolParser, arch, device,
                                    non_negative_int, positive_int)


def parse_args(argv=None):
    parser = ToolParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--model',
        choices=sorted(BENCHMARK_MODELS),
        help='a named backbone with its batch size (replaces --backbone and '
        '--arch)')
    parser.add_argument('--backbone', default='mmpretrain.VisionTransformer')
    parser.add_argument(
        '--arch',
        type=arch,
        default='b',
        help="the backbone's arch: a name, or a JSON object of its fields, "
        'e.g. \'{"embed_dims": 64, "num_layers": 2, "num_heads": 2, '
        '"feedforward_channels": 128}\'')
    parser.add_argument(
        '--img-size',
        type=positive_int,
        help="the backbone's img_size (default: the backbone's own)")
    parser.add_argument(
        '--method',
        nargs='+',
        choices=list(METHODS),
        default=list(METHODS),
        help='methods to time, at their papers\' defaults (default: all)')
    parser.add_argument(
        '--batch-size',
        type=positive_int,
        nargs='+',
        help="batch sizes, columns of the one table; defaults to the "
        "--model's, else 1 and 8")
    parser.add_argument(
        '--rounds',
        type=positive_int,
        default=20,
        help='timed forwards per model and batch size (the median is shown)')
    parser.add_argument(
        '--warmup',
        type=non_negative_int,
        default=3,
        help='untimed forwards per model and batch size first')
    parser.add_argument('--device', type=device, default='cpu')
    parser.add_argument('--threads', type=positive_int, default=None)
    args = parser.parse_args(argv)
    if not args.model:
        try:
            check_arch(args.backbone, args.arch)
        except InputError as e:
            parser.error(str(e))
    return args


def build(cfg: dict) -> nn.Module:
    """``cfg`` built from the same seed, with the backbone's own
    ``init_weights`` (as the wrappers run it): every model starts from the
    same stock weights."""
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg))
    if not isinstance(model, FrozenBackbone) and hasattr(
            model, 'init_weights'):
        model.init_weights()
    return model


def share_stock_tensors(model: nn.Module, stock: nn.Module) -> nn.Module:
    """Point each parameter and buffer of ``model`` that equals the stock
    one of the same name (``backbone.`` dropped) at the stock tensor, so
    that all models hold one copy of the frozen weights (a ViT-B per model
    would not fit in memory). Values are unchanged."""
    own = dict(stock.named_parameters())
    own.update(stock.named_buffers())
    for path, module in model.named_modules():
        path = path[len('backbone'):].lstrip('.') if path.startswith(
            'backbone') else path
        for tensors in (module._parameters, module._buffers):
            for name, tensor in tensors.items():
                theirs = own.get(f'{path}.{name}' if path else name)
                if (tensor is not None and theirs is not None
                        and theirs.shape == tensor.shape
                        and theirs.dtype == tensor.dtype
                        and torch.equal(theirs, tensor)):
                    tensors[name] = theirs
    for module in model.modules():
        if isinstance(module, ModuleSite):
            module._sync_module()  # the wrapped module follows its site
    return model


def build_models(backbone_cfg: dict, methods) -> tuple:
    """The stock backbone and, per method, its adapted model and (where it
    folds) its merged model, all on the stock weights (shared).

    Returns:
        tuple: ``models`` (row name -> model: ``'stock'``, ``method``,
        ``f'{method} merged'``), ``unmerged`` (method -> why it does not
        fold, one line) and ``refused`` (method -> why its wrapper refused
        the backbone, one line).
    """
    stock = build(backbone_cfg)
    models = {'stock': stock}
    unmerged, refused = {}, {}
    for method in methods:
        try:
            adapted = build(dict(METHODS[method], backbone=backbone_cfg))
        except (KeyError, ValueError) as error:
            refused[method] = str(error).strip('"')
            continue
        with torch.no_grad():
            for p in adapted.parameters():
                if p.requires_grad:
                    p.normal_(0, 0.02)
        models[method] = share_stock_tensors(adapted, stock)
        blocked = merge_blockers(adapted)
        if blocked:
            unmerged[method] = blocked[0]
        else:
            models[f'{method} merged'] = share_stock_tensors(
                merge_adapters(adapted), stock)
    return models, unmerged, refused


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    # Quiet the per-parameter init report of every build.
    MMLogger.get_instance('mmengine', log_level='WARNING')
    if args.model:
        named = BENCHMARK_MODELS[args.model]
        backbone_cfg = copy.deepcopy(named['backbone'])
        batch_sizes = args.batch_size or [named['batch_size']]
        name = args.model
    else:
        backbone_cfg = dict(type=args.backbone, arch=args.arch)
        batch_sizes = args.batch_size or [1, 8]
        name = f'{args.backbone} arch=' + (
            args.arch if isinstance(args.arch, str) else json.dumps(args.arch))
    if args.img_size:
        backbone_cfg['img_size'] = args.img_size
    models, unmerged, refused = build_models(backbone_cfg, args.method)
    device = torch.device(args.device)
    for model in models.values():
        model.to(device)
    size = {n: sum(p.numel() for p in m.parameters())
            for n, m in models.items()}

    # row name -> batch size -> median seconds per forward.
    median = {n: {} for n in models}
    shapes = []
    for batch_size in batch_sizes:
        inputs = example_inputs(
            models['stock'], batch_size=batch_size).to(device)
        shapes.append(tuple(inputs.shape))
        times = time_rounds(
            models, inputs, rounds=args.rounds, warmup=args.warmup)
        for row, t in times.items():
            median[row][batch_size] = statistics.median(t)

    print(f'{name}, inputs {", ".join(map(str, shapes))}, device '
          f'{args.device}, {torch.get_num_threads()} threads, median of '
          f'{args.rounds} interleaved rounds; (x): latency / stock\'s')

    def cell(row, batch_size):
        if row not in models:
            return '-'
        t = median[row][batch_size]
        return f'{t * 1e3:.1f} ms ({t / median["stock"][batch_size]:.3f}x)'

    header = ['method', 'params added'] + [
        f'b{b} {kind}' for b in batch_sizes for kind in ('unmerged', 'merged')
    ]
    print('| ' + ' | '.join(header) + ' |')
    print('| --- |' + ' ---: |' * (len(header) - 1))
    print('| stock | 0 | ' + ' | '.join(
        f'{cell("stock", b)} | -' for b in batch_sizes) + ' |')
    for method in args.method:
        if method in refused:
            continue
        added = size[method] - size['stock']
        print(f'| {method} | {added:,} | ' + ' | '.join(
            f'{cell(method, b)} | {cell(f"{method} merged", b)}'
            for b in batch_sizes) + ' |')
    print()
    for method, reason in unmerged.items():
        print(f'{method}: not merged ({reason})')
    for method, reason in refused.items():
        print(f'{method}: not built on this backbone ({reason})')
    merged = [(m, median[f'{m} merged'][b] / median['stock'][b])
              for m in args.method if f'{m} merged' in models
              for b in batch_sizes]
    if merged:
        ratios = [r for _, r in merged]
        print(f'merged / stock: {min(ratios):.3f} .. {max(ratios):.3f} '
              f'over {len(ratios)} (method, batch size) pairs')


if __name__ == '__main__':
    main()
