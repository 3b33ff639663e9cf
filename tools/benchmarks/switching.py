# Copyright (c) mmpetl contributors. All rights reserved.
"""Adapter switching vs loading a full merged checkpoint per task, measured
in one run: switch time, load time, and memory of N tasks on one backbone
vs N merged models.

    python tools/benchmarks/switching.py                 # ViT-B/16, 3 tasks
    python tools/benchmarks/switching.py --tasks 5 --rounds 10

Tasks are written to a temporary folder: a 'pre-trained' ViT-B/16, and per
task an adapter config and checkpoint (RepAdapter and ARC in turn, adapters
moved off the identity, a head of its own) and its merged checkpoint.
Loading a merged checkpoint is timed from the file (in the page cache: the
best case) into an already built stock model (``torch.load`` and
``load_state_dict``). A switch is timed from the call to
``AdapterSwitcher.switch`` to its return (the folds prepared when the tasks
were added: ``W U``, ``V^T``, folded biases; each switch writes
``W + (W U) V^T`` from the originals and copies the rest). Ratios are of
medians over all rounds and tasks; the medians per method are printed too.
"""
import statistics
import tempfile
import time
import os.path as osp

import torch
from mmengine.config import Config

import mmpetl  # noqa: F401
from mmpetl.apis.reparam import build_model, reparameterize_checkpoint
from mmpetl.apis.serving import AdapterSwitcher, tensor_nbytes
from mmpetl.fileio.safe_load import load_checkpoint_file
from mmpetl.fileio.state_dicts import model_state_dict
from mmpetl.apis.tool_options import check_arch
from mmpetl.utils import InputError
from mmpetl.utils.arguments import ToolParser, arch, positive_int

METHODS = (dict(type='mmpetl.RepAdapterBackbone'),
           dict(type='mmpetl.ARCBackbone'))


def parse_args():
    parser = ToolParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', type=arch, default='b',
                        help="the ViT's arch: a name, or a JSON object of its "
                        'fields')
    parser.add_argument('--tasks', type=positive_int, default=3)
    parser.add_argument('--rounds', type=positive_int, default=5)
    args = parser.parse_args()
    try:
        check_arch('mmpretrain.VisionTransformer', args.arch)
    except InputError as e:
        parser.error(str(e))
    return args


def write_tasks(root, arch, num_tasks):
    torch.manual_seed(0)
    vit = dict(type='mmpretrain.VisionTransformer', arch=arch)
    backbone = build_model(Config(dict(default_scope='mmpretrain',
                                       model=vit)))
    pretrained = osp.join(root, 'vit.pth')
    torch.save(dict(state_dict={f'backbone.{k}': v for k, v in
                                backbone.state_dict().items()}), pretrained)
    width = backbone.embed_dims
    del backbone
    vit['init_cfg'] = dict(type='Pretrained', checkpoint=pretrained,
                           prefix='backbone.')
    tasks = []
    for i in range(num_tasks):
        cfg = Config(dict(
            default_scope='mmpretrain',
            model=dict(
                type='ImageClassifier',
                backbone=dict(METHODS[i % len(METHODS)], backbone=vit),
                neck=None,
                head=dict(type='LinearClsHead', num_classes=100 + 10 * i,
                          in_channels=width))))
        config = osp.join(root, f'task{i}.py')
        cfg.dump(config)
        model = build_model(cfg)
        with torch.no_grad():
            for param in model.parameters():
                if param.requires_grad:
                    param.normal_(0, 0.02)
        checkpoint = osp.join(root, f'task{i}.pth')
        torch.save(dict(state_dict=model.state_dict()), checkpoint)
        del model
        merged = osp.join(root, f'task{i}_merged.pth')
        stock = osp.join(root, f'task{i}_stock.py')
        reparameterize_checkpoint(config, checkpoint, merged,
                                  out_config=stock)
        tasks.append(dict(config=config, checkpoint=checkpoint,
                          merged=merged, stock=stock))
    return tasks


def main():
    args = parse_args()
    with tempfile.TemporaryDirectory() as root:
        tasks = write_tasks(root, args.arch, args.tasks)
        switcher = AdapterSwitcher()
        for i, task in enumerate(tasks):
            switcher.add_task(f'task{i}', task['config'], task['checkpoint'])
        names = switcher.tasks
        # One stock model per task, each built from its own config (heads
        # differ), to time loading its merged checkpoint into it.
        stock_models = [build_model(Config.fromfile(t['stock']))
                        for t in tasks]
        merged_bytes = [tensor_nbytes([*m.parameters(), *m.buffers()])
                        for m in stock_models]
        switch_times, load_times = [], []
        by_method = {m['type']: [] for m in METHODS[:len(tasks)]}
        for _ in range(args.rounds):
            for i, (name, task, stock) in enumerate(
                    zip(names, tasks, stock_models)):
                start = time.perf_counter()
                switcher.switch(name)
                switch_times.append(time.perf_counter() - start)
                by_method[METHODS[i % len(METHODS)]['type']].append(
                    switch_times[-1])
                start = time.perf_counter()
                stock.load_state_dict(model_state_dict(
                    load_checkpoint_file(task['merged'])), strict=True)
                load_times.append(time.perf_counter() - start)
        memory = switcher.memory()

    switch, load = (statistics.median(t) for t in (switch_times,
                                                     load_times))
    n, mib = len(tasks), 2**20
    print(f'ViT arch={args.arch}, {n} tasks (RepAdapter / ARC in turn), '
          f'{torch.get_num_threads()} threads, {args.rounds} rounds, '
          'medians')
    print(f'switch task (fold adapters from the originals, swap head): '
          f'{switch * 1e3:8.1f} ms')
    for method, times in by_method.items():
        median = statistics.median(times)
        print(f'  {method.split(".")[-1] + " tasks:":54s} '
              f'{median * 1e3:8.1f} ms ({median / load:.2f} of load)')
    print(f'load a merged checkpoint into a built model:             '
          f'{load * 1e3:8.1f} ms')
    print(f'switch / load = {switch / load:.2f}')
    print(f'memory, {n} tasks on one backbone: {memory["total"] / mib:8.1f} '
          f'MiB (backbone {memory["backbone"] / mib:.1f}, live folded '
          f'linears {memory["live"] / mib:.1f}, adapters and heads '
          f'{memory["tasks"] / mib:.1f}, prepared folds '
          f'{memory["folds"] / mib:.1f})')
    print(f'memory, {n} merged models:         '
          f'{sum(merged_bytes) / mib:8.1f} MiB')
    print(f'ratio = {memory["total"] / sum(merged_bytes):.2f}')


if __name__ == '__main__':
    main()
