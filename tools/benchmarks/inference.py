# Copyright (c) mmpetl contributors. All rights reserved.
"""Inference latency of a stock backbone, the same with each method's
adapters (unmerged) and, where the method folds, merged, measured in one run
per batch size, as ratios to stock.

    python tools/benchmarks/inference.py                 # ViT-B/16, 224x224
    python tools/benchmarks/inference.py --method ARCBackbone --device cuda
    python tools/benchmarks/inference.py --model videomae-vit-b  # 16x224x224
    python tools/benchmarks/inference.py --batch-size 1 8 --method \
        RepAdapterBackbone LoRABackbone AdaptFormerBackbone \
        HoulsbyAdapterBackbone ConvpassBackbone VPTBackbone
"""
import argparse
import copy
import statistics

import torch

import mmpetl  # noqa: F401
from mmpetl.apis.reparam import example_inputs
from mmpetl.benchmarks.latency import BENCHMARK_MODELS, time_rounds
from mmpetl.models.merge import merge_adapters, merge_blockers
from mmpetl.registry import MODELS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--model',
        choices=sorted(BENCHMARK_MODELS),
        help='a named backbone with its batch size (replaces --backbone and '
        '--arch)')
    parser.add_argument('--backbone', default='mmpretrain.VisionTransformer')
    parser.add_argument('--arch', default='b')
    parser.add_argument(
        '--method',
        nargs='+',
        default=['RepAdapterBackbone'],
        help='mmpetl wrappers to time (with their default options)')
    parser.add_argument(
        '--batch-size',
        type=int,
        nargs='+',
        help="one table per batch size; defaults to the --model's, else 8")
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None)
    return parser.parse_args()


def build_models(backbone_cfg: dict, methods) -> tuple:
    """The stock backbone, each method's adapted model (its trainable
    parameters drawn from N(0, 0.02): trained-looking, not the identity)
    and, where the method folds, its merged model; and why the others do
    not fold."""
    torch.manual_seed(0)
    models = {'stock': MODELS.build(copy.deepcopy(backbone_cfg))}
    unfolded = {}
    for method in methods:
        adapted = MODELS.build(
            dict(type=f'mmpetl.{method}',
                 backbone=copy.deepcopy(backbone_cfg)))
        with torch.no_grad():
            for p in adapted.parameters():
                if p.requires_grad:
                    p.normal_(0, 0.02)
        models[f'{method} (unmerged)'] = adapted
        blocked = merge_blockers(adapted)
        if blocked:
            unfolded[method] = blocked[0]
        else:
            models[f'{method} merged'] = merge_adapters(
                copy.deepcopy(adapted))
    return models, unfolded


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        named = BENCHMARK_MODELS[args.model]
        backbone_cfg = copy.deepcopy(named['backbone'])
        batch_sizes = args.batch_size or [named['batch_size']]
    else:
        backbone_cfg = dict(type=args.backbone, arch=args.arch)
        batch_sizes = args.batch_size or [8]
    models, unfolded = build_models(backbone_cfg, args.method)
    device = torch.device(args.device)
    for model in models.values():
        model.to(device)
    params = {
        name: sum(p.numel() for p in m.parameters())
        for name, m in models.items()
    }
    name = args.model or f'{args.backbone} arch={args.arch}'
    stats = dict(median=statistics.median, min=min)
    width = max(22, max(len(n) for n in models) + 2)
    for batch_size in batch_sizes:
        inputs = example_inputs(
            models['stock'], batch_size=batch_size).to(device)
        times = time_rounds(models, inputs, rounds=args.rounds)
        print(f'{name}, input {tuple(inputs.shape)}, device {args.device}, '
              f'{torch.get_num_threads()} threads, {args.rounds} '
              'interleaved rounds')
        latency = {
            stat: {name: reduce(t) for name, t in times.items()}
            for stat, reduce in stats.items()
        }
        ratio = {
            stat: {name: t / latency[stat]['stock'] for name, t in by.items()}
            for stat, by in latency.items()
        }
        print(f'{"model":<{width}}{"params":>14}' +
              ''.join(f'{stat:>13}{"vs stock":>10}' for stat in stats))
        for model_name in models:
            print(f'{model_name:<{width}}{params[model_name]:>14,}' +
                  ''.join(f'{latency[stat][model_name] * 1e3:>10.1f} ms'
                          f'{ratio[stat][model_name]:>10.3f}'
                          for stat in stats))
        for method in args.method:
            if method in unfolded:
                print(f'{method}: not merged ({unfolded[method]})')
                continue
            merged = {stat: ratio[stat][f'{method} merged'] for stat in stats}
            within = all(abs(r - 1) <= 0.01 for r in merged.values())
            print(f'{method} merged/stock = ' +
                  ', '.join(f'{r:.3f} ({stat})' for stat, r in merged.items())
                  + f' ({"within" if within else "outside"} the 1% target)')
        print()


if __name__ == '__main__':
    main()
