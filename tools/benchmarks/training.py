# Copyright (c) mmpetl contributors. All rights reserved.
"""Training-step memory and time of E3VA (each memory mode), RepAdapter and
full fine-tuning against the floor (backbone frozen, no adapters), measured
in one run on the same model config and batch, printed as ratios.

    python tools/benchmarks/training.py                       # all tasks
    python tools/benchmarks/training.py --task seg --size 512 --rounds 3
    python tools/benchmarks/training.py --task voc --amp      # bf16 autocast
    python tools/benchmarks/training.py --task det --size 512 --device cuda
    python tools/benchmarks/training.py --task cls    # ViT-B/16 classification

``--task cls``: linear probe, RepAdapter, ARC, LoRA and full fine-tuning on
ViT-B/16 (the VTAB-1k configs), plus the floor of a sequential adapter
(frozen backbone, input-gradient backward only), as ratios to full
fine-tuning: memory at ``--memory-batch-size`` (the paper's 64), step time
at ``--batch-size`` (default 8, CPU-feasible).

Tasks: ``seg`` UperNet Swin-B (ADE20K), ``det`` Cascade Mask R-CNN Swin-B
(COCO), ``voc`` RetinaNet Swin-L (Pascal VOC). Memory is measured as in
:mod:`mmpetl.benchmarks.training_cost` (saved activations + parameters +
gradients + AdamW state; CUDA peak too on a GPU). Models are built without
pre-trained weights (the cost does not depend on them).
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
from mmpetl.apis.reparam import build_model
from mmpetl.benchmarks.training_cost import (classification_batch, dense_batch,
                                             make_optim_wrapper,
                                             measure_training_steps,
                                             profile_step, require_input_grad,
                                             saved_bytes_of_forward)
from mmpetl.utils.log_utils import log_to_file, temporary_log_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = dict(
    seg='configs/ade20k/upernet_swin-b-in22k_{}_8xb2-160k_ade20k-512x512.py',
    det='configs/coco/cascade-mask-rcnn_swin-b-in22k_{}_fpn_4conv1fc-giou_'
    'amp-ms-crop-3x_coco.py',
    voc='configs/voc/retinanet_swin-l-in22k_{}_fpn_amp-1x_voc0712.py')
NUM_CLASSES = dict(seg=150, det=80, voc=20)
FLOOR = 'floor (frozen, no adapters)'
#: Printed name -> (config name part, wrapper where no config ships, E3VA
#: memory mode). 'E3VA autocast' runs with --amp only (without autocast it
#: is 'E3VA keep').
METHODS = {
    FLOOR: ('frozen', 'FrozenBackbone', None),
    'E3VA keep': ('e3va', 'E3VABackbone', 'keep'),
    'E3VA autocast': ('e3va', 'E3VABackbone', 'autocast'),
    'E3VA recompute 0-1': ('e3va', 'E3VABackbone',
                           ('recompute', 'recompute', 'keep', 'keep')),
    'E3VA recompute all': ('e3va', 'E3VABackbone', 'recompute'),
    'RepAdapter': ('repadapter', 'RepAdapterBackbone', None),
    'full fine-tuning': ('full-ft', None, None),
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
#: V-PETL Bench's GPU memory of E3VA / the frozen backbone, per task.
ANCHOR_RATIO = dict(det=7639 / 7137, voc=4819 / 3967)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--task', choices=['seg', 'det', 'voc', 'all', 'cls'],
                        default='all',
                        help='dense tasks (all: seg, det, voc) or cls')
    parser.add_argument('--size', type=int, default=None,
                        help='square input side (default 512; cls 224)')
    parser.add_argument('--batch-size', type=int, default=None,
                        help='timed batch (default 2, the configs\' 8xb2; '
                        'cls 8)')
    parser.add_argument('--memory-batch-size', type=int, default=64,
                        help='cls: batch of the memory count (default 64, '
                        'the paper\'s)')
    parser.add_argument('--rounds', type=int, default=3)
    parser.add_argument('--profile', type=int, default=0, metavar='N',
                        help='cls: profile one step of RepAdapter, ARC and '
                        'the floor at the timed batch and print the N '
                        'largest per-operator differences to the floor')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: forward under bf16 autocast '
                        '(works on CPU)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None)
    return parser.parse_args()


def method_configs(task, size, amp):
    """The shipped config of each method; where none ships (the ADE20K
    floor), the E3VA config with the other wrapper; E3VA in each memory
    mode."""
    e3va = Config.fromfile(osp.join(ROOT, CONFIGS[task].format('e3va')))
    configs = {}
    for name, (key, wrapper, memory) in METHODS.items():
        if memory == 'autocast' and not amp:
            continue
        shipped = osp.join(ROOT, CONFIGS[task].format(key))
        if osp.exists(shipped):
            cfg = Config.fromfile(shipped)
        else:
            cfg = copy.deepcopy(e3va)
            cfg.model.backbone = dict(type=f'mmpetl.{wrapper}',
                                      backbone=e3va.model.backbone.backbone)
        if memory is not None:
            cfg.model.backbone.memory = memory
        node = cfg.model.backbone
        while 'backbone' in node:
            node = node.backbone
        node.init_cfg = None
        if task == 'seg':
            # mmseg pads every batch to the crop size: make it the input's.
            cfg.model.data_preprocessor.size = (size, size)
        configs[name] = cfg
    return configs


def trainable_backbone(model):
    """Trainable parameters of the backbone wrapper: for E3VA the highway
    and its output norms."""
    return sum(p.numel() for p in model.backbone.parameters()
               if p.requires_grad)


def report(task, costs, trainable, args):
    mib = 2**20
    print(f'\n{task}: input {args.batch_size}x3x{args.size}x{args.size}, '
          f'device {args.device}, {torch.get_num_threads()} threads, '
          f'{"bf16 autocast" if args.amp else "fp32"}, median of '
          f'{args.rounds} interleaved rounds')
    header = (f'{"method":<28}{"backbone trainable":>19}{"saved":>8}'
              f'{"params":>8}{"grads":>7}{"AdamW":>7}{"memory":>8}'
              f'{"step":>9}')
    cuda = args.device.startswith('cuda')
    print(header + (f'{"cuda peak":>11}' if cuda else '') + '   (MiB, s)')
    for name, c in costs.items():
        line = (f'{name:<28}{trainable[name]:>19,}{c.saved / mib:>8.0f}'
                f'{c.params / mib:>8.0f}{c.grads / mib:>7.0f}'
                f'{c.optimizer / mib:>7.0f}{c.memory / mib:>8.0f}'
                f'{c.seconds:>9.3f}')
        if cuda:
            line += f'{c.cuda_peak / mib:>11.0f}'
        print(line)
    floor, full = costs[FLOOR], costs['full fine-tuning']
    e3va = [name for name in costs if name.startswith('E3VA')]
    for name in e3va + ['RepAdapter']:
        c = costs[name]
        line = (f'{name + " / floor:":<29} memory '
                f'{c.memory / floor.memory:.3f}, step time '
                f'{c.seconds / floor.seconds:.3f}; saving over full '
                f'fine-tuning: memory '
                f'{100 * (1 - c.memory / full.memory):.1f}%, step time '
                f'{100 * (1 - c.seconds / full.seconds):.1f}%')
        if cuda:
            line += f'; CUDA peak {c.cuda_peak / floor.cuda_peak:.3f} x floor'
        print(line)
    best = min(e3va, key=lambda n: costs[n].memory)
    memory = costs[best].memory / floor.memory
    time = costs['E3VA keep'].seconds / floor.seconds
    anchor = (f' (anchor, GPU: {ANCHOR_RATIO[task]:.2f})'
              if task in ANCHOR_RATIO else '')
    print(f'targets: lowest E3VA memory / floor {memory:.3f} ({best}) '
          f'<= 1.05{anchor}: {"met" if memory <= 1.05 else "missed"}; '
          f'E3VA keep step time / floor {time:.3f} <= 1.10: '
          f'{"met" if time <= 1.10 else "missed"}; paper saving over full '
          f'fine-tuning (E3VA): {PAPER_SAVING["memory"]}% memory / '
          f'{PAPER_SAVING["time"]}% time')


def build_models(configs, device, log_file):
    """Build each config (seed 0) on ``device``; the builds' init records
    go to ``log_file``, not the console."""
    models = {}
    with log_to_file(log_file):
        for name, cfg in configs.items():
            torch.manual_seed(0)
            models[name] = revert_sync_batchnorm(build_model(cfg)).to(device)
    return models


def cls_models(device, log_file):
    """The VTAB-1k ViT-B/16 model of each method, without pre-trained
    weights."""
    configs = {}
    for name, method in CLS_METHODS.items():
        cfg = Config.fromfile(osp.join(ROOT, CLS_CONFIG.format(method)))
        node = cfg.model.backbone
        while 'backbone' in node or 'module' in node:  # LoRAModel: module
            node = node.get('backbone', node.get('module'))
        node.init_cfg = None
        configs[name] = cfg
    models = build_models(configs, device, log_file)
    require_input_grad(models['floor (input grad only)'].backbone)
    return models


def cls_report(costs, memory_batch, args):
    mib = 2**20
    print(f'\ncls: ViT-B/16 {args.size}x{args.size}, memory at batch '
          f'{memory_batch}, step at batch {args.batch_size}, device '
          f'{args.device}, {torch.get_num_threads()} threads, median of '
          f'{args.rounds} interleaved rounds, load average '
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
    floor = costs['floor (input grad only)'].seconds / full.seconds
    for name in ('RepAdapter', 'ARC'):
        ratio = costs[name].seconds / full.seconds
        print(f'{name} step/FT {ratio:.3f} (target <= {CLS_TIME_TARGET}, '
              f'{"met" if ratio <= CLS_TIME_TARGET else "missed"}; floor '
              f'{floor:.3f})')


def cls_profile(models, data, top):
    """Where RepAdapter's and ARC's steps spend time beyond the floor's:
    their own operators (absent from the floor) and the largest
    per-operator differences, one profiled step each (after a warm-up)."""
    tables = {}
    for name in ('floor (input grad only)', 'RepAdapter', 'ARC'):
        wrapper = make_optim_wrapper(models[name])
        models[name].train_step(data, wrapper)
        tables[name] = profile_step(models[name], data, wrapper)
    floor = tables['floor (input grad only)']
    print(f'\nprofile (torch.profiler self CPU seconds, one step each): '
          f'floor {sum(floor.values()):.3f}')
    for name in ('RepAdapter', 'ARC'):
        table = tables[name]
        total = sum(table.values())
        own = sum(t for key, t in table.items() if key not in floor)
        print(f'{name} {total:.3f}: its own operators (not in the floor) '
              f'{own:.3f} ({100 * own / total:.1f}% of its step); largest '
              f'differences to the floor (seconds {name} / floor):')
        diffs = sorted(set(table) | set(floor),
                       key=lambda k: -abs(table.get(k, 0) - floor.get(k, 0)))
        for key in diffs[:top]:
            print(f'  {table.get(key, 0) - floor.get(key, 0):+8.3f}  '
                  f'({table.get(key, 0):.3f} / {floor.get(key, 0):.3f})  '
                  f'{key[:100]}')


def classification(args, device, log_file):
    """Costs of the classification methods, memory at the paper's batch."""
    models = cls_models(device, log_file)
    args.batch_size = args.batch_size or 8
    size = args.size = args.size or 224
    costs = measure_training_steps(
        models, classification_batch(size, args.batch_size, 100),
        rounds=args.rounds,
        autocast_dtype=torch.bfloat16 if args.amp else None)
    memory_data = classification_batch(size, args.memory_batch_size, 100)
    for name, model in models.items():
        costs[name] = dataclasses.replace(
            costs[name], saved=saved_bytes_of_forward(model, memory_data))
    cls_report(costs, args.memory_batch_size, args)
    if args.profile:
        cls_profile(models, classification_batch(size, args.batch_size, 100),
                    args.profile)


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    log_file = temporary_log_file('mmpetl_bench_training_')
    print(f'init records of the builds: {log_file}')
    if args.task == 'cls':
        return classification(args, device, log_file)
    args.size = args.size or 512
    args.batch_size = args.batch_size or 2
    tasks = tuple(CONFIGS) if args.task == 'all' else (args.task, )
    for task in tasks:
        models = build_models(method_configs(task, args.size, args.amp),
                              device, log_file)
        data = dense_batch('seg' if task == 'seg' else 'det', args.size,
                           args.batch_size, num_classes=NUM_CLASSES[task])
        costs = measure_training_steps(
            models, data, rounds=args.rounds,
            autocast_dtype=torch.bfloat16 if args.amp else None)
        report(task, costs,
               {name: trainable_backbone(m) for name, m in models.items()},
               args)
        del models


if __name__ == '__main__':
    main()
