# Copyright (c) mmpetl contributors. All rights reserved.
"""Run ``tools/train.py`` on several configs in one process (or in each rank
of one ``torch.distributed.run`` launch), and other tools after them, so
that a test trains every method for the price of one interpreter start.

Usage (``tools/dist_train.sh``'s launch, one job after the other)::

    python -m torch.distributed.run --nproc_per_node=2 \\
        tests/support/train_many.py JOBS.json
    python tests/support/train_many.py JOBS.json        # one process

``JOBS.json``: a list of ``[tool, args]`` (``tool``: a path under
``tools/``). Launched by torch.distributed.run (``RANK`` set), each
``train.py`` run gets ``--launcher pytorch`` (on one gloo group started
here) and the other tools run on rank 0 only. A run that fails stops the
rest (exit status 1).
"""
import json
import os
import os.path as osp
import runpy
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def main():
    sys.path.insert(0, ROOT)
    distributed = 'RANK' in os.environ
    with open(sys.argv[1]) as f:
        jobs = json.load(f)
    if distributed:
        # One gloo group for every run (tools/train.py then leaves it be).
        import torch.distributed as dist
        dist.init_process_group(backend='gloo')
    for tool, args in jobs:
        path = osp.join(ROOT, 'tools', tool)
        if tool == 'train.py' and distributed:
            args = [*args, '--launcher', 'pytorch']
        elif distributed and os.environ['RANK'] != '0':
            continue
        sys.argv = [path, *args]
        try:
            runpy.run_path(path, run_name='__main__')
        except SystemExit as e:
            if e.code:
                print(f'train_many: {tool} {args} exited {e.code}',
                      file=sys.stderr)
                sys.exit(1)
    if distributed:
        dist.barrier()
        dist.destroy_process_group()


if __name__ == '__main__':
    main()
