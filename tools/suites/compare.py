# Copyright (c) mmpetl contributors. All rights reserved.
"""The CPU-sized method comparison (`make compare`, about 3 CPU-minutes
per method and task on 2 cores): the `make demo` ViT pre-trained on digits 0-4
adapted to digits 5-9 and to LFW faces vs non-faces by every method with a
folder in configs/compare/ (the linear probe and full fine-tuning first, then
the rest by name), through tools/suites/vtab.py; ``--methods lora arc`` runs
a subset. Real data shipped inside scikit-learn and scikit-image; nothing is
downloaded.

Writes the data under ``data/``, pre-trains with tools/train.py when the
checkpoint is missing, then runs tools/suites/vtab.py (finished tasks are
skipped) and prints the table of ``work_dirs/compare/results.md``, all under
the current directory (the configs and tools come from mmpetl: a checkout or
the installed wheel). Other arguments are passed on to tools/suites/vtab.py:
the protocol version (search on a held-out fifth of each training list,
seeds)::

    python tools/suites/compare.py --search scale=0.1,1,10 --seeds 3 \
        --work-dir work_dirs/compare-protocol
"""
import argparse
import os.path as osp
import subprocess
import sys

#: The checkout, or mmpetl/.mim of an installed wheel: configs/ and tools/.
ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
PRETRAIN_CONFIG = osp.join(ROOT, 'configs', 'quickstart',
                           'vit-tiny_digits0-4_pretrain.py')
CONFIG_DIR = osp.join(ROOT, 'configs', 'compare')
BASELINES = ('linear-probe', 'full-finetune')
TASKS = ['digits5-9', 'lfw-faces']


def run(tool, *args):
    """Run ``tools/<tool>`` of mmpetl in the current directory."""
    print(f'$ python tools/{tool} ' + ' '.join(args), flush=True)
    subprocess.run([sys.executable, osp.join(ROOT, 'tools', tool), *args],
                   check=True)


def parse_args():
    parser = argparse.ArgumentParser(
        description=__doc__.split('\n\n')[0],
        epilog='Other arguments go to tools/suites/vtab.py (its --help).')
    return parser.parse_known_args()[1]


def main():
    vtab_args = parse_args()
    from mmengine.config import Config

    from mmpetl.datasets import (write_digits_task, write_holdout_split,
                                 write_lfw_faces_task)
    from mmpetl.suites.task_suite import method_folders
    write_digits_task('data/quickstart/digits0-4', (0, 1, 2, 3, 4))
    write_digits_task('data/quickstart/digits5-9', (5, 6, 7, 8, 9))
    write_lfw_faces_task('data/compare/lfw-faces')
    for task in ('data/quickstart/digits5-9', 'data/compare/lfw-faces'):
        write_holdout_split(task)
    pretrained = Config.fromfile(PRETRAIN_CONFIG).pretrained
    if not osp.isfile(pretrained):
        run('train.py', PRETRAIN_CONFIG, '--work-dir',
            osp.dirname(pretrained))
    # argparse keeps the last of repeated options: the caller's win.
    run('suites/vtab.py', '--config-dir', CONFIG_DIR, '--prefix', 'vit-tiny',
        '--methods', *method_folders(CONFIG_DIR, BASELINES), '--tasks',
        *TASKS, '--work-dir', 'work_dirs/compare', *vtab_args)


if __name__ == '__main__':
    try:
        main()
    except subprocess.CalledProcessError as e:
        sys.exit(e.returncode)
