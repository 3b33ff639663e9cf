# Copyright (c) mmpetl contributors. All rights reserved.
"""Inference latency of a stock backbone, the same with adapters (unmerged)
and merged, measured in one run, as ratios to stock.

    python tools/benchmarks/inference.py                 # ViT-B/16, 224x224
    python tools/benchmarks/inference.py --method ARCBackbone --device cuda
    python tools/benchmarks/inference.py --model videomae-vit-b  # 16x224x224
"""
import argparse
import copy
import statistics

import torch

import mmpetl  # noqa: F401
from mmpetl.benchmarks.latency import BENCHMARK_MODELS, time_rounds
from mmpetl.registry import MODELS
from mmpetl.reparam import example_inputs, merge_adapters


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--model',
        choices=sorted(BENCHMARK_MODELS),
        help='a named backbone with its batch size (replaces --backbone and '
        '--arch)')
    parser.add_argument('--backbone', default='mmpretrain.VisionTransformer')
    parser.add_argument('--arch', default='b')
    parser.add_argument('--method', default='RepAdapterBackbone')
    parser.add_argument(
        '--batch-size',
        type=int,
        help="defaults to the --model's, else 8")
    parser.add_argument('--rounds', type=int, default=20)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.model:
        named = BENCHMARK_MODELS[args.model]
        backbone_cfg = copy.deepcopy(named['backbone'])
        batch_size = args.batch_size or named['batch_size']
    else:
        backbone_cfg = dict(type=args.backbone, arch=args.arch)
        batch_size = args.batch_size or 8
    torch.manual_seed(0)
    stock = MODELS.build(copy.deepcopy(backbone_cfg))
    adapted = MODELS.build(
        dict(type=f'mmpetl.{args.method}', backbone=backbone_cfg))
    with torch.no_grad():  # trained-looking adapters, not the identity
        for p in adapted.parameters():
            if p.requires_grad:
                p.normal_(0, 0.02)
    merged = merge_adapters(copy.deepcopy(adapted))
    models = {
        'stock': stock,
        'adapters (unmerged)': adapted,
        'merged': merged
    }
    device = torch.device(args.device)
    for model in models.values():
        model.to(device)
    inputs = example_inputs(stock, batch_size=batch_size).to(device)
    times = time_rounds(models, inputs, rounds=args.rounds)
    params = {
        name: sum(p.numel() for p in m.parameters())
        for name, m in models.items()
    }
    name = args.model or f'{args.backbone} arch={args.arch}'
    print(f'{name}, {args.method}, input '
          f'{tuple(inputs.shape)}, device {args.device}, '
          f'{torch.get_num_threads()} threads, {args.rounds} interleaved '
          'rounds')
    stats = dict(median=statistics.median, min=min)
    latency = {
        stat: {name: reduce(t) for name, t in times.items()}
        for stat, reduce in stats.items()
    }
    print(f'{"model":<22}{"params":>14}' +
          ''.join(f'{stat:>13}{"vs stock":>10}' for stat in stats))
    for name in models:
        print(f'{name:<22}{params[name]:>14,}' + ''.join(
            f'{latency[stat][name] * 1e3:>10.1f} ms'
            f'{latency[stat][name] / latency[stat]["stock"]:>10.3f}'
            for stat in stats))
    for stat in stats:
        ratio = latency[stat]['merged'] / latency[stat]['stock']
        print(f'merged/stock ({stat}) = {ratio:.3f} '
              f'({"within" if abs(ratio - 1) <= 0.01 else "outside"} the 1% '
              'target)')

if __name__ == '__main__':
    main()
