# Copyright (c) mmpetl contributors. All rights reserved.
"""Training-step memory and time of every method, measured in one run on
the same backbone and batch, printed as ratios to full fine-tuning and to
the floor (backbone frozen, no adapters); ``--out`` writes them as JSON.

    python tools/benchmarks/training.py --task cls --out costs.json  # ViT-B/16
    python tools/benchmarks/training.py                       # dense tasks
    python tools/benchmarks/training.py --task seg --size 512 --rounds 3
    python tools/benchmarks/training.py --task voc --amp      # bf16 autocast
    python tools/benchmarks/training.py --task det --size 512 --device cuda
    python tools/benchmarks/training.py --task cls --methods repadapter lora
    python tools/benchmarks/training.py --task giants  # counted, real size

``--task cls``: every method folder of ``--config-dir`` (default
configs/vtab: ``{config_dir}/{method}/{prefix}_{method}_{config_task}.py``,
ViT-B/16 on CIFAR-100), optionally on another stock backbone
(``--backbone``, a base such as configs/vtab/_base_/backbones/vit-b16.py),
plus the floor of a sequential adapter (``input-grad floor``: frozen
backbone, input-gradient backward only). Memory at
``--memory-batch-size`` (the RepAdapter paper's 64), step time at
``--batch-size`` (default 8, CPU-feasible). The floor of the ratios is the
linear probe.

Dense tasks: ``seg`` UperNet Swin-B (ADE20K), ``det`` Cascade Mask R-CNN
Swin-B (COCO), ``voc`` RetinaNet Swin-L (Pascal VOC): every config shipped
for the anchor (one per method, e.g. ``frozen``, ``e3va``, ``repadapter``,
``mona``, ``full-ft``; where no ``frozen`` ships, the E3VA config with
``mmpetl.FrozenBackbone``), E3VA also in its other memory modes.

``--task giants``: counted training memory (nothing runs: models on the
meta device, :mod:`mmpetl.benchmarks.memory`) of full fine-tuning, every
method and the floor on ViT-L/H/g, EVA-02-L, DINOv2-g and SAM ViT-H, on one
GPU and per rank under FSDP with 2, 4 and 8 ranks, and which of a 24, 40
and 80 GB GPU each fits (``--memory-batch-size``, default 64; SAM 1024px:
batch 1).

Memory is measured as in :mod:`mmpetl.benchmarks.training_cost` (saved
activations + parameters + gradients + AdamW state; CUDA peak too on a
GPU). Models are built without pre-trained weights (the cost does not
depend on them). The JSON (one task): ``{method: {"train_memory_rel_full",
"step_time_rel_full", "train_memory_rel_floor", "step_time_rel_floor",
"train_memory_bytes", "step_time_s", "trainable_backbone"}}``, the method
named by its config folder (cls) or config name part (dense).
"""
import copy
import dataclasses
import glob
import json
import os
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm

import mmpetl  # noqa: F401  (compat fixes)
from mmpetl.benchmarks.training_cost import (classification_batch, dense_batch,
                                             make_optim_wrapper,
                                             measure_training_steps,
                                             profile_step, relative_costs,
                                             require_input_grad,
                                             saved_bytes_of_forward)
from mmpetl.apis.reparam import build_model
from mmpetl.benchmarks.plots import plot_costs
from mmpetl.fileio.configs import config_files
from mmpetl.fileio.outputs import (check_output_paths, protected_inputs,
                                   write_text)
from mmpetl.suites.task_suite import (method_folders, replace_backbone,
                                      stock_backbone)
from mmpetl.utils.arguments import (ToolParser, device, non_negative_int,
                                    positive_int)
from mmpetl.utils.errors import InputError
from mmpetl.utils.log_utils import log_to_file, temporary_log_file

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIGS = dict(
    seg='configs/ade20k/upernet_swin-b-in22k_{}_8xb2-160k_ade20k-512x512.py',
    det='configs/coco/cascade-mask-rcnn_swin-b-in22k_{}_fpn_4conv1fc-giou_'
    'amp-ms-crop-3x_coco.py',
    voc='configs/voc/retinanet_swin-l-in22k_{}_fpn_amp-1x_voc0712.py')
NUM_CLASSES = dict(seg=150, det=80, voc=20)
#: The dense baselines' config name parts: the floor and full fine-tuning.
DENSE_FLOOR, DENSE_FULL = 'frozen', 'full-ft'
#: E3VA's other memory modes (the shipped config keeps its own, 'keep'):
#: printed name -> mode. 'e3va autocast' runs with --amp only (without
#: autocast it is 'keep').
E3VA_MODES = {
    'e3va autocast': 'autocast',
    'e3va recompute 0-1': ('recompute', 'recompute', 'keep', 'keep'),
    'e3va recompute all': 'recompute',
}
#: The paper's average savings of E3VA over full fine-tuning.
PAPER_SAVING = dict(memory=62.2, time=26.2)
#: The classification baselines' method folders: the floor of the ratios
#: (frozen backbone) and full fine-tuning.
CLS_FLOOR, CLS_FULL = 'linear-probe', 'full-finetune'
#: The floor of a sequential adapter: the linear probe with the input
#: gradient run through the frozen backbone.
INPUT_GRAD_FLOOR = 'input-grad floor'
#: The RepAdapter paper's savings over full fine-tuning (ratios 0.75, 0.80).
REPADAPTER_PAPER_SAVING = dict(memory=20, time=25)
#: The target: a sequential adapter's step time over full fine-tuning's.
CLS_TIME_TARGET = 0.70
#: Methods --profile compares with the input-gradient floor.
PROFILED = ('repadapter', 'arc')
#: V-PETL Bench's GPU memory of E3VA / the frozen backbone, per task.
ANCHOR_RATIO = dict(det=7639 / 7137, voc=4819 / 3967)


def parse_args():
    parser = ToolParser(description=__doc__.split('\n')[1])
    parser.add_argument('--task', choices=['seg', 'det', 'voc', 'all', 'cls',
                                           'giants'],
                        default='all',
                        help='dense tasks (all: seg, det, voc) or cls')
    parser.add_argument(
        '--methods', nargs='+',
        help='only these (config folders for cls, config name parts for '
        'the dense tasks; the two baselines are always measured); '
        'default: every method')
    parser.add_argument('--config-dir', default='configs/vtab',
                        help='cls: one folder per method')
    parser.add_argument('--prefix', default='vit-b16',
                        help='cls: config names are '
                        '{prefix}_{method}_{config_task}.py')
    parser.add_argument('--config-task', default='cifar',
                        help='cls: the task whose configs are built')
    parser.add_argument('--backbone',
                        help='cls: a backbone base (e.g. configs/vtab/_base_/'
                        'backbones/vit-b16.py) replacing the configs\' own')
    parser.add_argument('--size', type=positive_int, default=None,
                        help='square input side (default 512; cls 224)')
    parser.add_argument('--batch-size', type=positive_int, default=None,
                        help='timed batch (default 2, the configs\' 8xb2; '
                        'cls 8)')
    parser.add_argument('--memory-batch-size', type=positive_int, default=64,
                        help='cls: batch of the memory count (default 64, '
                        'the paper\'s)')
    parser.add_argument('--rounds', type=positive_int, default=3)
    parser.add_argument('--profile', type=non_negative_int, default=0,
                        metavar='N',
                        help='cls: profile one step of RepAdapter, ARC and '
                        'the input-gradient floor at the timed batch and '
                        'print the N largest per-operator differences to '
                        'the floor')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision: forward under bf16 autocast '
                        '(works on CPU)')
    parser.add_argument('--out', metavar='FILE',
                        help='write the figures as JSON (one --task)')
    parser.add_argument('--force', action='store_true',
                        help='replace --out if it exists (never an input)')
    parser.add_argument('--device', type=device, default='cpu')
    parser.add_argument('--threads', type=positive_int, default=None)
    args = parser.parse_args()
    if args.out and args.task == 'all':
        parser.error('--out takes the figures of one task: pass --task')
    if args.backbone and not osp.isfile(osp.join(ROOT, args.backbone)):
        parser.error(f'--backbone {args.backbone} does not exist')
    args.inputs = run_inputs(args)
    if args.out:  # before any work
        try:
            check_output_paths(
                [args.out, osp.splitext(args.out)[0] + '.png'], args.force,
                args.inputs)
        except InputError as e:
            parser.error(str(e))
    return args


def run_inputs(args):
    """The files the run reads: every config it may build (of
    ``--config-dir`` for cls, the shipped ones of the dense tasks), with
    their bases, and ``--backbone``'s."""
    if args.task == 'giants':  # built from mmpetl.benchmarks.memory
        return []
    if args.task == 'cls':
        configs = glob.glob(osp.join(
            ROOT, args.config_dir, '*',
            f'{args.prefix}_*_{args.config_task}.py'))
        configs += [osp.join(ROOT, args.backbone)] if args.backbone else []
    else:
        tasks = tuple(CONFIGS) if args.task == 'all' else (args.task, )
        configs = [p for t in tasks for p in glob.glob(
            osp.join(ROOT, CONFIGS[t].format('*')))]
    return sorted({f for path in configs for f in config_files(path)})


def fail(message: str):
    print(f'error: {message}', file=sys.stderr)
    sys.exit(2)


def selected(available, wanted, baselines, what):
    """``available`` in order, only the ``wanted`` ones (all if None) and
    the ``baselines``; a wanted or baseline name not available fails."""
    missing = [m for m in (*baselines, *(wanted or ())) if m not in available]
    if missing:
        fail(f'no {what} for {", ".join(missing)} (available: '
             f'{", ".join(available)})')
    return [m for m in available
            if wanted is None or m in wanted or m in baselines]


def dense_methods(task):
    """The config name parts of the configs shipped for ``task``."""
    head, tail = osp.join(ROOT, CONFIGS[task]).split('{}')
    return sorted(path[len(head):-len(tail)]
                  for path in glob.glob(f'{head}*{tail}'))


def method_configs(task, size, amp, wanted):
    """The shipped config of each method; where no floor ships (ADE20K),
    the E3VA config with ``mmpetl.FrozenBackbone``; E3VA in each memory
    mode."""
    shipped = dense_methods(task)
    available = [DENSE_FLOOR] + [
        m for m in shipped if m not in (DENSE_FLOOR, DENSE_FULL)
    ] + [DENSE_FULL] * (DENSE_FULL in shipped)
    names = selected(available, wanted, (DENSE_FLOOR, DENSE_FULL),
                     f'{task} config')
    configs = {}
    for name in names:
        if name in shipped:
            configs[name] = Config.fromfile(
                osp.join(ROOT, CONFIGS[task].format(name)))
        else:
            cfg = Config.fromfile(osp.join(ROOT, CONFIGS[task].format('e3va')))
            cfg.model.backbone = dict(type='mmpetl.FrozenBackbone',
                                      backbone=cfg.model.backbone.backbone)
            configs[name] = cfg
        if name == 'e3va':
            for variant, memory in E3VA_MODES.items():
                if memory == 'autocast' and not amp:
                    continue
                configs[variant] = copy.deepcopy(configs['e3va'])
                configs[variant].model.backbone.memory = memory
    for cfg in configs.values():
        stock_backbone(cfg.model).init_cfg = None
        if task == 'seg':
            # mmseg pads every batch to the crop size: make it the input's.
            cfg.model.data_preprocessor.size = (size, size)
    return configs


def trainable_backbone(model):
    """Trainable parameters of the backbone wrapper (for E3VA the highway
    and its output norms)."""
    return sum(p.numel() for p in model.backbone.parameters()
               if p.requires_grad)


def print_costs(title, costs, trainable, full, floor, cuda):
    """One row per method: its bytes and step time, and both as ratios to
    ``full``'s and ``floor``'s."""
    mib = 2**20
    print(title)
    print(f'{"method":<27}{"backbone trainable":>19}{"saved":>8}'
          f'{"params":>8}{"grads":>7}{"AdamW":>7}{"memory":>8}{"step":>9}'
          f'{"memory/FT":>11}{"step/FT":>9}{"memory/floor":>14}'
          f'{"step/floor":>12}' + (f'{"cuda peak":>11}' if cuda else '') +
          '   (MiB, s)')
    rel = relative_costs(costs, full, floor)
    for name, c in costs.items():
        r = rel[name]
        print(f'{name:<27}{trainable[name]:>19,}{c.saved / mib:>8.0f}'
              f'{c.params / mib:>8.0f}{c.grads / mib:>7.0f}'
              f'{c.optimizer / mib:>7.0f}{c.memory / mib:>8.0f}'
              f'{c.seconds:>9.3f}{r["train_memory_rel_full"]:>11.3f}'
              f'{r["step_time_rel_full"]:>9.3f}'
              f'{r["train_memory_rel_floor"]:>14.3f}'
              f'{r["step_time_rel_floor"]:>12.3f}' +
              (f'{c.cuda_peak / mib:>11.0f}' if cuda else ''))
    return {name: dict(r, trainable_backbone=trainable[name])
            for name, r in rel.items()}


def report(task, costs, trainable, args):
    """The dense table and E3VA's targets."""
    figures = print_costs(
        f'\n{task}: input {args.batch_size}x3x{args.size}x{args.size}, '
        f'device {args.device}, {torch.get_num_threads()} threads, '
        f'{"bf16 autocast" if args.amp else "fp32"}, median of '
        f'{args.rounds} interleaved rounds; floor: {DENSE_FLOOR} (backbone '
        f'frozen, no adapters), FT: {DENSE_FULL}', costs, trainable,
        DENSE_FULL, DENSE_FLOOR, args.device.startswith('cuda'))
    e3va = [name for name in costs if name.startswith('e3va')]
    if e3va:
        floor = costs[DENSE_FLOOR]
        best = min(e3va, key=lambda n: costs[n].memory)
        memory = costs[best].memory / floor.memory
        anchor = (f' (anchor, GPU: {ANCHOR_RATIO[task]:.2f})'
                  if task in ANCHOR_RATIO else '')
        line = (f'targets: lowest E3VA memory / floor {memory:.3f} ({best}) '
                f'<= 1.05{anchor}: {"met" if memory <= 1.05 else "missed"}')
        if 'e3va' in costs:
            time = costs['e3va'].seconds / floor.seconds
            line += (f'; e3va (keep) step time / floor {time:.3f} <= 1.10: '
                     f'{"met" if time <= 1.10 else "missed"}')
        print(f'{line}; paper saving over full fine-tuning (E3VA): '
              f'{PAPER_SAVING["memory"]}% memory / {PAPER_SAVING["time"]}% '
              'time')
    return figures


def build_models(configs, device, log_file):
    """Build each config (seed 0) on ``device``; the builds' init records
    go to ``log_file``, not the console."""
    models = {}
    with log_to_file(log_file):
        for name, cfg in configs.items():
            torch.manual_seed(0)
            models[name] = revert_sync_batchnorm(build_model(cfg)).to(device)
    return models


def cls_configs(args):
    """The classification config of each method folder (no pre-trained
    weights; on ``--backbone`` where given), the input-gradient floor
    first."""
    config_dir = osp.join(ROOT, args.config_dir)
    if not osp.isdir(config_dir):
        fail(f'--config-dir {args.config_dir} is not a folder')
    methods = selected(
        method_folders(config_dir, (CLS_FLOOR, CLS_FULL)), args.methods,
        (CLS_FLOOR, CLS_FULL), f'method folder in {args.config_dir}')
    backbone = None
    if args.backbone:
        backbone = Config.fromfile(osp.join(ROOT, args.backbone))
    configs = {}
    for method in methods:
        path = osp.join(config_dir, method,
                        f'{args.prefix}_{method}_{args.config_task}.py')
        if not osp.isfile(path):
            fail(f'{path} does not exist: check --prefix and --config-task')
        cfg = Config.fromfile(path)
        if backbone:
            replace_backbone(cfg, backbone.backbone, backbone.get('neck'),
                             backbone.feat_dims)
        stock_backbone(cfg.model).init_cfg = None
        configs[method] = cfg
    return {INPUT_GRAD_FLOOR: copy.deepcopy(configs[CLS_FLOOR]), **configs}


def cls_report(costs, trainable, memory_batch, args):
    """The classification table, the RepAdapter paper's claim and the
    step-time target."""
    figures = print_costs(
        f'\ncls: {args.prefix} configs of {args.config_dir} '
        f'({args.config_task})'
        f'{f" on {args.backbone}" if args.backbone else ""}, '
        f'{args.size}x{args.size}, memory at batch {memory_batch}, step at '
        f'batch {args.batch_size}, device {args.device}, '
        f'{torch.get_num_threads()} threads, median of {args.rounds} '
        f'interleaved rounds, load average '
        f'{" ".join(f"{x:.1f}" for x in os.getloadavg())}; floor: '
        f'{CLS_FLOOR}, FT: {CLS_FULL}', costs, trainable, CLS_FULL,
        CLS_FLOOR, args.device.startswith('cuda'))
    paper = REPADAPTER_PAPER_SAVING
    print(f'RepAdapter paper: -{paper["time"]}% time, -{paper["memory"]}% '
          f'memory (step/FT {1 - paper["time"] / 100:.2f}, memory/FT '
          f'{1 - paper["memory"] / 100:.2f})')
    full = costs[CLS_FULL]
    floor = costs[INPUT_GRAD_FLOOR].seconds / full.seconds
    for name in PROFILED:
        if name in costs:
            ratio = costs[name].seconds / full.seconds
            print(f'{name} step/FT {ratio:.3f} (target <= {CLS_TIME_TARGET},'
                  f' {"met" if ratio <= CLS_TIME_TARGET else "missed"}; '
                  f'input-grad floor {floor:.3f})')
    return figures


def cls_profile(models, data, top):
    """Where RepAdapter's and ARC's steps spend time beyond the
    input-gradient floor's: their own operators (absent from the floor)
    and the largest per-operator differences, one profiled step each
    (after a warm-up)."""
    tables = {}
    for name in (INPUT_GRAD_FLOOR, *PROFILED):
        if name not in models:
            continue
        wrapper = make_optim_wrapper(models[name])
        models[name].train_step(data, wrapper)
        tables[name] = profile_step(models[name], data, wrapper)
    floor = tables.pop(INPUT_GRAD_FLOOR)
    print(f'\nprofile (torch.profiler self CPU seconds, one step each): '
          f'{INPUT_GRAD_FLOOR} {sum(floor.values()):.3f}')
    for name, table in tables.items():
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
    configs = cls_configs(args)
    num_classes = configs[CLS_FULL].model.head.num_classes
    models = build_models(configs, device, log_file)
    require_input_grad(models[INPUT_GRAD_FLOOR].backbone)
    args.batch_size = args.batch_size or 8
    size = args.size = args.size or 224
    costs = measure_training_steps(
        models, classification_batch(size, args.batch_size, num_classes),
        rounds=args.rounds,
        autocast_dtype=torch.bfloat16 if args.amp else None)
    memory_data = classification_batch(size, args.memory_batch_size,
                                       num_classes)
    for name, model in models.items():
        costs[name] = dataclasses.replace(
            costs[name], saved=saved_bytes_of_forward(model, memory_data))
    figures = cls_report(
        costs, {name: trainable_backbone(m) for name, m in models.items()},
        args.memory_batch_size, args)
    if args.profile:
        cls_profile(models,
                    classification_batch(size, args.batch_size, num_classes),
                    args.profile)
    return figures


def giants_memory(args, log_file):
    """Print and return :func:`mmpetl.benchmarks.memory.memory_table` of
    every giant row (``--methods``: a subset)."""
    from mmpetl.benchmarks.memory import (GIANTS, format_memory_table,
                                          memory_table)
    from mmpetl.benchmarks.methods import METHODS
    names = args.methods or list(METHODS)
    unknown = sorted(set(names) - set(METHODS))
    if unknown:
        fail(f'--methods: no method {", ".join(unknown)} (known: '
             f'{", ".join(METHODS)})')
    methods = dict({'full-ft': None,
                    'floor': dict(type='mmpetl.FrozenBackbone')},
                   **{name: METHODS[name] for name in names})
    figures = {}
    for giant, cfg in GIANTS.items():
        batch = 1 if cfg.get('img_size', 224) > 512 else \
            args.memory_batch_size
        with log_to_file(log_file):
            figures[giant] = memory_table(methods, cfg, batch)
        print('\n'.join(format_memory_table(giant, figures[giant], batch)),
              end='\n\n', flush=True)
    return figures


#: The bar charts next to ``--out``: (figure key, axis label, scale).
COST_PANELS = (('train_memory_bytes', 'training memory (MiB)', 2**-20),
               ('step_time_s', 'training step time (ms)', 1e3))


def write_figures(figures, path, inputs, chart=True):
    """``figures`` as JSON at ``path`` and, with ``chart``, as bar charts of
    memory and step time per method next to it (``.png``), atomically,
    never over one of ``inputs``."""
    written = [path]
    png = osp.splitext(path)[0] + '.png'
    try:
        with protected_inputs(inputs):
            write_text(path, json.dumps(figures, indent=1))
            if chart and plot_costs(figures, COST_PANELS, png):
                written.append(png)
    except InputError as e:  # an input of the run, a failed write
        fail(str(e))
    print(f'wrote {", ".join(written)}')


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    log_file = temporary_log_file('mmpetl_bench_training_')
    print(f'init records of the builds: {log_file}')
    if args.task == 'giants':
        figures = giants_memory(args, log_file)
    elif args.task == 'cls':
        figures = classification(args, device, log_file)
    else:
        args.size = args.size or 512
        args.batch_size = args.batch_size or 2
        tasks = tuple(CONFIGS) if args.task == 'all' else (args.task, )
        # Every task's configs first: a wrong --methods fails now.
        configs = {task: method_configs(task, args.size, args.amp,
                                        args.methods) for task in tasks}
        for task in tasks:
            models = build_models(configs[task], device, log_file)
            data = dense_batch('seg' if task == 'seg' else 'det', args.size,
                               args.batch_size,
                               num_classes=NUM_CLASSES[task])
            costs = measure_training_steps(
                models, data, rounds=args.rounds,
                autocast_dtype=torch.bfloat16 if args.amp else None)
            figures = report(
                task, costs,
                {name: trainable_backbone(m) for name, m in models.items()},
                args)
            del models
    if args.out:
        # The giants' tables are per backbone: printed, not charted.
        write_figures(figures, args.out, args.inputs,
                      chart=args.task != 'giants')


if __name__ == '__main__':
    main()
