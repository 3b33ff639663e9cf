# Copyright (c) mmpetl contributors. All rights reserved.
"""Training-step memory and time of E3VA, RepAdapter and full fine-tuning
against the floor (backbone frozen, no adapters), measured in one run on the
same model config and batch, printed as ratios.

    python tools/benchmarks/training.py                       # both tasks
    python tools/benchmarks/training.py --task seg --size 512 --rounds 3
    python tools/benchmarks/training.py --task det --size 512 --device cuda

Memory is measured as in :mod:`mmpetl.benchmarks.training_cost` (saved activations +
parameters + gradients + AdamW state; CUDA peak too on a GPU). Models are
built without pre-trained weights (the cost does not depend on them).
"""
import argparse
import copy
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm

import mmpetl  # noqa: F401  (compat fixes)
from mmpetl.reparam import build_model
from mmpetl.benchmarks.training_cost import dense_batch, measure_training_steps

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = dict(
    seg='configs/ade20k/upernet_swin-b-in22k_{}_8xb2-160k_ade20k-512x512.py',
    det='configs/coco/cascade-mask-rcnn_swin-b-in22k_{}_fpn_ms-3x_coco.py')
#: Printed name -> (config name part, wrapper where no config ships).
METHODS = {
    'floor (frozen, no adapters)': ('floor', 'FrozenBackbone'),
    'E3VA': ('e3va', 'E3VABackbone'),
    'RepAdapter': ('repadapter', 'RepAdapterBackbone'),
    'full fine-tuning': ('full-ft', None),
}
#: The paper's average savings of E3VA over full fine-tuning.
PAPER_SAVING = dict(memory=62.2, time=26.2)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', choices=['seg', 'det', 'both'],
                        default='both')
    parser.add_argument('--size', type=int, default=512,
                        help='square input side (default 512)')
    parser.add_argument('--batch-size', type=int, default=2,
                        help='per-device batch of the configs (8xb2)')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None)
    return parser.parse_args()


def method_configs(task, size):
    """The shipped config of each method; where none ships (the floor, COCO
    RepAdapter), the E3VA config with the other wrapper."""
    e3va = Config.fromfile(osp.join(ROOT, CONFIGS[task].format('e3va')))
    configs = {}
    for name, (key, wrapper) in METHODS.items():
        shipped = osp.join(ROOT, CONFIGS[task].format(key))
        if osp.exists(shipped):
            cfg = Config.fromfile(shipped)
        else:
            cfg = copy.deepcopy(e3va)
            cfg.model.backbone = dict(type=f'mmpetl.{wrapper}',
                                      backbone=e3va.model.backbone.backbone)
        node = cfg.model.backbone
        while 'backbone' in node:
            node = node.backbone
        node.init_cfg = None
        if task == 'seg':
            # mmseg pads every batch to the crop size: make it the input's.
            cfg.model.data_preprocessor.size = (size, size)
        configs[name] = cfg
    return configs


def report(task, costs, args):
    mib = 2**20
    print(f'\n{task}: input {args.batch_size}x3x{args.size}x{args.size}, '
          f'device {args.device}, {torch.get_num_threads()} threads, median '
          f'of {args.rounds} interleaved rounds')
    header = (f'{"method":<30}{"saved":>10}{"params":>10}{"grads":>9}'
              f'{"AdamW":>9}{"memory":>10}{"step":>10}')
    cuda = args.device.startswith('cuda')
    print(header + (f'{"cuda peak":>11}' if cuda else '') + '   (MiB, s)')
    for name, c in costs.items():
        line = (f'{name:<30}{c.saved / mib:>10.0f}{c.params / mib:>10.0f}'
                f'{c.grads / mib:>9.0f}{c.optimizer / mib:>9.0f}'
                f'{c.memory / mib:>10.0f}{c.seconds:>10.3f}')
        if cuda:
            line += f'{c.cuda_peak / mib:>11.0f}'
        print(line)
    floor = costs['floor (frozen, no adapters)']
    e3va, full = costs['E3VA'], costs['full fine-tuning']
    mem_ratio, time_ratio = e3va.memory / floor.memory, \
        e3va.seconds / floor.seconds
    print(f'E3VA / floor: memory {mem_ratio:.3f} (target <= 1.05, '
          f'{"met" if mem_ratio <= 1.05 else "missed"}), step time '
          f'{time_ratio:.3f} (target <= 1.10, '
          f'{"met" if time_ratio <= 1.10 else "missed"})')
    for name in ('E3VA', 'RepAdapter'):
        c = costs[name]
        print(f'{name} saving over full fine-tuning: memory '
              f'{100 * (1 - c.memory / full.memory):.1f}%, step time '
              f'{100 * (1 - c.seconds / full.seconds):.1f}%' +
              (f'   (paper, E3VA: {PAPER_SAVING["memory"]}% / '
               f'{PAPER_SAVING["time"]}%)' if name == 'E3VA' else ''))
    if cuda:
        saving = 100 * (1 - e3va.cuda_peak / full.cuda_peak)
        print(f'E3VA CUDA peak: {e3va.cuda_peak / floor.cuda_peak:.3f} x '
              f'floor, saving {saving:.1f}% over full fine-tuning')


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for task in (('seg', 'det') if args.task == 'both' else (args.task, )):
        models = {}
        for name, cfg in method_configs(task, args.size).items():
            torch.manual_seed(0)
            models[name] = revert_sync_batchnorm(build_model(cfg)).to(device)
        data = dense_batch(task, args.size, args.batch_size,
                           num_classes=150 if task == 'seg' else 80)
        costs = measure_training_steps(models, data, rounds=args.rounds)
        report(task, costs, args)
        del models


if __name__ == '__main__':
    main()
