# Copyright (c) mmpetl contributors. All rights reserved.
"""The quick-start demo (`make demo`): real data, nothing downloaded.

1. Write scikit-learn's handwritten digits as two tasks: digits 0-4
   (pre-training) and digits 5-9 (the downstream task).
2. Pre-train a tiny ViT from scratch on digits 0-4 (tools/train.py).
3. Adapt it to digits 5-9 by linear probe and by RepAdapter (tools/train.py).
4. Merge the RepAdapter checkpoint (tools/reparam.py --verify) and evaluate
   the merged checkpoint with the *stock* mmpretrain config (tools/test.py).
5. Print accuracy, trainable parameters, checkpoint sizes and inference
   latency of stock vs adapter vs merged models.

Everything is written under the current directory (``data/quickstart``,
``work_dirs/quickstart``); the configs and tools come from mmpetl (a
checkout, or the installed wheel's ``mmpetl/.mim``).
"""
import argparse
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time

#: The checkout, or mmpetl/.mim of an installed wheel: configs/ and tools/.
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = osp.join(ROOT, 'configs', 'quickstart')
WORK = osp.join('work_dirs', 'quickstart')


def step(title):
    print(f'\n=== {title}', flush=True)


#: A line of the runner's training log: epoch, iteration, iterations per
#: epoch, and the rest (loss, eta).
TRAIN_LINE = re.compile(r'Epoch\(train\)\s*\[(\d+)\]\[\s*(\d+)/(\d+)\]')
ETA = re.compile(r'eta: (\S+)')
LOSS = re.compile(r'\sloss: ([\d.]+)')


def set_demo_threads():
    """One PyTorch thread and no dataloader workers per process, for the
    demo and its tools, unless the caller chose otherwise
    (``MMPETL_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MMPETL_NUM_WORKERS``;
    :mod:`mmpetl.utils.threads`). The README's figures are measured at that
    setting: a 4-layer ViT on 32x32 digits gains little from more threads,
    a shared machine loses much, and the figures then do not depend on the
    number of cores. Returns a line that says what was chosen."""
    from mmpetl.utils.threads import set_thread_defaults
    if not (os.environ.get('MMPETL_NUM_THREADS')
            or os.environ.get('OMP_NUM_THREADS')):
        os.environ['MMPETL_NUM_THREADS'] = '1'
    os.environ.setdefault('MMPETL_NUM_WORKERS', '0')
    threads = set_thread_defaults()
    return (f'{threads} PyTorch thread(s) and '
            f'{os.environ["MMPETL_NUM_WORKERS"]} dataloader worker(s) per '
            f'process; {os.cpu_count()} CPUs, load average '
            f'{os.getloadavg()[0]:.1f}')


def run(tool, *args, log=None, epochs=None):
    """Run ``tools/<tool>`` of mmpetl in the current directory; its log goes
    to ``log`` (a file) to keep the demo readable, and is shown if it
    fails. A training (``epochs`` given) prints its progress about every
    tenth of the way, with the runner's ETA."""
    command = [sys.executable, osp.join(ROOT, 'tools', tool), *args]
    shown = [osp.relpath(a) if osp.isabs(a) and not osp.relpath(a).startswith(
        '..') else a for a in args]
    print(f'$ python tools/{tool} ' + ' '.join(shown), flush=True)
    start = time.time()
    shown_tenths = 0
    with open(log, 'w') as f, subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=dict(os.environ, PYTHONUNBUFFERED='1')) \
            as process:  # unbuffered: the progress as it happens
        for line in process.stdout:
            f.write(line)
            match = TRAIN_LINE.search(line) if epochs else None
            if match is None:
                continue
            epoch, it, per_epoch = map(int, match.groups())
            done = ((epoch - 1) * per_epoch + it) / (epochs * per_epoch)
            if int(done * 10) > shown_tenths:
                shown_tenths = int(done * 10)
                eta, loss = ETA.search(line), LOSS.search(line)
                print(f'  epoch {epoch}/{epochs} ({done:.0%})'
                      + (f', loss {loss.group(1)}' if loss else '')
                      + (f', eta {eta.group(1)}' if eta else ''), flush=True)
    if process.returncode:
        print(open(log).read()[-5000:])
        sys.exit(f'demo: tools/{tool} failed (exit {process.returncode}), '
                 f'log: {log}')
    print(f'  done in {time.time() - start:.0f} s (log: {log})', flush=True)


def train(config, work_dir, epochs):
    os.makedirs(work_dir, exist_ok=True)
    run('train.py', osp.join(CONFIGS, config), '--work-dir', work_dir,
        log=osp.join(work_dir, 'train.log'), epochs=epochs)


def test(config, checkpoint, work_dir):
    os.makedirs(work_dir, exist_ok=True)
    out = osp.join(work_dir, 'metrics.json')
    # --force: a second `make demo` replaces the metrics of the first.
    run('test.py', config, checkpoint, '--work-dir', work_dir,
        '--metrics-out', out, '--force',
        log=osp.join(work_dir, 'test.log'))
    return json.load(open(out))['accuracy/top1']


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--fresh', action='store_true',
                        help='pre-train again even if a checkpoint exists')
    args = parser.parse_args()
    start = time.time()
    from mmpetl.utils import InputError
    try:
        print(f'demo: {set_demo_threads()}', flush=True)
    except InputError as e:  # e.g. MMPETL_NUM_THREADS=two
        sys.exit(f'demo: {e}')

    from mmengine.config import Config

    from mmpetl.datasets import write_digits_task
    base = Config.fromfile(
        osp.join(CONFIGS, 'vit-tiny_digits5-9_repadapter.py'))

    step('1/5 data: scikit-learn handwritten digits (real scans, shipped '
         'with the package)')
    for digits, name in (((0, 1, 2, 3, 4), 'digits0-4'),
                         ((5, 6, 7, 8, 9), 'digits5-9')):
        counts = write_digits_task(osp.join('data', 'quickstart', name),
                                   digits)
        print(f'  {name}: {counts["train"]} train / {counts["test"]} test')

    step('2/5 pre-train a tiny ViT on digits 0-4')
    if args.fresh or not osp.exists(base.pretrained):
        train('vit-tiny_digits0-4_pretrain.py', f'{WORK}/pretrain',
              base.pretrain_epochs)
    else:
        print(f'  using {base.pretrained} (--fresh to redo)')

    step('3/5 adapt to digits 5-9: linear probe, then RepAdapter')
    results = {}
    for method in ('linear-probe', 'repadapter'):
        config = osp.join(CONFIGS, f'vit-tiny_digits5-9_{method}.py')
        work_dir = f'{WORK}/{method}'
        train(config, work_dir, base.train_cfg.max_epochs)
        checkpoint = f'{work_dir}/epoch_{base.train_cfg.max_epochs}.pth'
        results[method] = dict(
            config=config,
            checkpoint=checkpoint,
            accuracy=test(config, checkpoint, f'{work_dir}/test'))

    step('4/5 merge RepAdapter into the ViT and test with the stock config')
    adapter = results['repadapter']
    merged = dict(
        config=f'{WORK}/repadapter/merged_config.py',
        checkpoint=f'{WORK}/repadapter/merged.pth')
    run('reparam.py', adapter['config'], adapter['checkpoint'],
        merged['checkpoint'], '--out-config', merged['config'], '--verify',
        '--force', log=f'{WORK}/repadapter/reparam.log')
    print('  ' + open(f'{WORK}/repadapter/reparam.log').read().strip()
          .replace('\n', '\n  '))
    merged['accuracy'] = test(merged['config'], merged['checkpoint'],
                              f'{WORK}/repadapter/test_merged')
    results['merged'] = merged

    step('5/5 parameters, sizes and latency')
    print(report(results))
    minutes, seconds = divmod(round(time.time() - start), 60)
    print(f'\ndemo finished in {minutes} min {seconds:02d} s (load average '
          f'{os.getloadavg()[0]:.1f} at the end)')


def report(results):
    """The summary table: accuracy, parameters, checkpoint size, latency."""
    import torch
    from mmengine.config import Config

    from mmpetl.benchmarks.latency import measure_latency
    from mmpetl.fileio.safe_load import load_checkpoint_file
    from mmpetl.fileio.state_dicts import model_state_dict
    from mmpetl.engine.hooks import count_parameters
    from mmpetl.utils.log_utils import log_to_file
    from mmpetl.apis.reparam import build_model

    models = {}
    # Init records and checkpoint loading go to a file, as in the tools.
    with log_to_file(osp.join(WORK, 'report.log')):
        for name, entry in results.items():
            model = build_model(Config.fromfile(entry['config']))
            model.load_state_dict(
                model_state_dict(load_checkpoint_file(entry['checkpoint'])))
            models[name] = model
        models['stock (no adapters)'] = build_model(
            Config.fromfile(results['merged']['config']))
    torch.manual_seed(0)
    inputs = torch.randn(16, 3, 32, 32)
    latency = measure_latency(
        {k: models[k] for k in ('stock (no adapters)', 'repadapter',
                                'merged')},
        inputs,
        rounds=50,
        forward=lambda model, x: model(x, mode='tensor'))
    stock = latency['stock (no adapters)']

    rows = [('model', 'top-1 %', 'trainable params', 'total params',
             'checkpoint', 'latency (batch 16)')]
    for name in ('linear-probe', 'repadapter', 'merged',
                 'stock (no adapters)'):
        counts = count_parameters(models[name])
        entry = results.get(name, {})
        size = (f"{os.path.getsize(entry['checkpoint']) / 1024:.0f} KB"
                if entry else '-')
        accuracy = f"{entry['accuracy']:.2f}" if entry else '-'
        trainable = f"{counts['trainable']:,}" if name in (
            'linear-probe', 'repadapter') else '-'
        speed = (f'{latency[name] * 1e3:.2f} ms ({latency[name] / stock:.3f}x)'
                 if name in latency else '-')
        rows.append((name, accuracy, trainable, f"{counts['total']:,}", size,
                     speed))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [' | '.join(c.ljust(w) for c, w in zip(row, widths))
             for row in rows]
    lines.insert(1, '-+-'.join('-' * w for w in widths))
    gain = results['repadapter']['accuracy'] - results['linear-probe'][
        'accuracy']
    same = results['merged']['accuracy'] == results['repadapter']['accuracy']
    lines.append('')
    lines.append(f'RepAdapter vs linear probe: {gain:+.2f} points; merged '
                 f'model {"matches" if same else "DIFFERS FROM"} the adapter '
                 'model.')
    return '\n'.join(lines)


if __name__ == '__main__':
    main()
