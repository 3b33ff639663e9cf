# Copyright (c) mmpetl contributors. All rights reserved.
"""Training-step memory and time of E3VA, RepAdapter and full fine-tuning
against the floor (backbone frozen, no adapters), measured in one run on the
same model config and batch, printed as ratios.

    python tools/benchmarks/training.py                       # both tasks
    python tools/benchmarks/training.py --task seg --size 512 --rounds 3
    python tools/benchmarks/training.py --task det --size 512 --device cuda
    python tools/benchmarks/training.py --task cls    # ViT-B/16 classification

``--task cls``: linear probe, RepAdapter, ARC, LoRA and full fine-tuning on
ViT-B/16 (the VTAB-1k configs), plus the floor of a sequential adapter
(frozen backbone, input-gradient backward only), as ratios to full
fine-tuning: memory at ``--memory-batch-size`` (the paper's 64), step time
at ``--batch-size`` (default 8, CPU-feasible).

Memory is measured as in :mod:`mmpetl.benchmarks.training_cost` (saved activations +
parameters + gradients + AdamW state; CUDA peak too on a GPU). Models are
built without pre-trained weights (the cost does not depend on them).
"""
import argparse
import copy
import dataclasses
import os
import os.path as osp

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm

import mmpetl  # noqa: F401  (compat fixes)
from mmpetl.reparam import build_model
from mmpetl.benchmarks.training_cost import (classification_batch, dense_batch,
                                             measure_training_steps,
                                             require_input_grad,
                                             saved_bytes_of_forward)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
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
CLS_CONFIG = 'configs/vtab/{0}/vit-b16_{0}_cifar.py'
#: Printed name -> VTAB-1k config method; the floor is the linear probe with
#: the input gradient run through the frozen backbone.
CLS_METHODS = {
    'floor (input grad only)': 'linear-probe',
    'linear probe': 'linear-probe',
    'RepAdapter': 'repadapter',
    'ARC': 'arc',
    'LoRA': 'lora',
    'full fine-tuning': 'full-finetune',
}
#: The RepAdapter paper's savings over full fine-tuning (ratios 0.75, 0.80).
REPADAPTER_PAPER_SAVING = dict(memory=20, time=25)
#: Issue target: a sequential adapter's step time over full fine-tuning's.
CLS_TIME_TARGET = 0.70


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', choices=['seg', 'det', 'both', 'cls'],
                        default='both')
    parser.add_argument('--size', type=int, default=None,
                        help='square input side (default 512; cls 224)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='timed batch (default 2, the configs\' 8xb2; '
                        'cls 8)')
    parser.add_argument('--memory-batch-size', type=int, default=64,
                        help='cls: batch of the memory count (default 64, '
                        'the paper\'s)')
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


def cls_models(device):
    """The VTAB-1k ViT-B/16 model of each method, without pre-trained
    weights."""
    models = {}
    for name, method in CLS_METHODS.items():
        cfg = Config.fromfile(osp.join(ROOT, CLS_CONFIG.format(method)))
        node = cfg.model.backbone
        while 'backbone' in node or 'module' in node:  # LoRAModel: module
            node = node.get('backbone', node.get('module'))
        node.init_cfg = None
        torch.manual_seed(0)
        models[name] = build_model(cfg).to(device)
    require_input_grad(models['floor (input grad only)'].backbone)
    return models


def cls_report(costs, memory_batch, args):
    mib = 2**20
    print(f'\ncls: ViT-B/16 {args.size}x{args.size}, memory at batch {memory_batch}, step '
          f'at batch {args.batch_size}, device {args.device}, '
          f'{torch.get_num_threads()} threads, median of {args.rounds} '
          f'interleaved rounds, load average '
          f'{" ".join(f"{x:.1f}" for x in os.getloadavg())}')
    cuda = args.device.startswith('cuda')
    print(f'{"method":<26}{"saved":>9}{"params":>8}{"grads":>7}{"AdamW":>7}'
          f'{"memory":>9}{"step":>9}{"memory/FT":>11}{"step/FT":>9}' +
          (f'{"cuda peak":>11}' if cuda else '') + '   (MiB, s)')
    full = costs['full fine-tuning']
    for name, c in costs.items():
        print(f'{name:<26}{c.saved / mib:>9.0f}{c.params / mib:>8.0f}'
              f'{c.grads / mib:>7.0f}{c.optimizer / mib:>7.0f}'
              f'{c.memory / mib:>9.0f}{c.seconds:>9.3f}'
              f'{c.memory / full.memory:>11.3f}'
              f'{c.seconds / full.seconds:>9.3f}' +
              (f'{c.cuda_peak / mib:>11.0f}' if cuda else ''))
    paper = REPADAPTER_PAPER_SAVING
    print(f'RepAdapter paper: -{paper["time"]}% time, -{paper["memory"]}% '
          f'memory (step/FT {1 - paper["time"] / 100:.2f}, memory/FT '
          f'{1 - paper["memory"] / 100:.2f})')
    for name in ('RepAdapter', 'ARC'):
        ratio = costs[name].seconds / full.seconds
        print(f'{name} step/FT {ratio:.3f} (target <= {CLS_TIME_TARGET}, '
              f'{"met" if ratio <= CLS_TIME_TARGET else "missed"}; floor '
              f'{costs["floor (input grad only)"].seconds / full.seconds:.3f})')


def classification(args, device):
    """Costs of the classification methods, memory at the paper's batch."""
    models = cls_models(device)
    args.batch_size = args.batch_size or 8
    size = args.size = args.size or 224
    costs = measure_training_steps(
        models, classification_batch(size, args.batch_size, 100),
        rounds=args.rounds)
    memory_data = classification_batch(size, args.memory_batch_size, 100)
    for name, model in models.items():
        costs[name] = dataclasses.replace(
            costs[name], saved=saved_bytes_of_forward(model, memory_data))
    cls_report(costs, args.memory_batch_size, args)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if args.task == 'cls':
        return classification(args, device)
    args.size = args.size or 512
    args.batch_size = args.batch_size or 2
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
