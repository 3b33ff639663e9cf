# Copyright (c) mmpetl contributors. All rights reserved.
"""Time every method in mmpetl against its peer implementation on the same
mmpretrain ViT, in one interleaved run (see
:mod:`mmpetl.benchmarks.peers`): peft's LoRA / DoRA (when peft is
installed: ``pip install mmpetl[benchmark]``) and the reference formulas of
SSF and AdaptFormer.

Prints, per method: the training step over the peer's and over the frozen
backbone's (the floor: a linear probe), and unmerged inference over the
peer's and over the stock backbone's. Also the load average before and
after, and the noise: the spread (max - min) / median of the floor's steps.
"""
import argparse
import copy
import os

import torch
from mmengine.logging import MMLogger

from mmpetl.benchmarks.methods import METHODS
from mmpetl.benchmarks.peers import REFERENCES, Classifier, time_models
from mmpetl.registry import MODELS


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--arch', default='deit-s',
                        help="mmpretrain VisionTransformer arch (default "
                        "'deit-s'; 'b' is ViT-B)")
    parser.add_argument('--img-size', type=int, default=224)
    parser.add_argument('--batch-size', type=int, default=4)
    parser.add_argument('--rounds', type=int, default=5)
    parser.add_argument('--methods', nargs='+', default=list(REFERENCES),
                        choices=list(METHODS))
    parser.add_argument('--threads', type=int, default=None)
    return parser.parse_args()


def main():
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    MMLogger.get_instance('mmengine', log_level='WARNING')
    torch.manual_seed(0)
    stock = MODELS.build(dict(type='mmpretrain.VisionTransformer',
                              arch=args.arch, img_size=args.img_size,
                              patch_size=16))
    width = stock.embed_dims
    head = Classifier(stock, width).head
    models, peers = {}, {}

    def classifier(backbone):
        model = Classifier(backbone, width)
        model.head.load_state_dict(head.state_dict())
        return model

    floor = classifier(copy.deepcopy(stock))
    floor.backbone.requires_grad_(False)
    models['floor'] = floor
    models['stock'] = floor  # inference of the stock backbone
    for name in args.methods:
        models[name] = classifier(MODELS.build(
            dict(METHODS[name], backbone=copy.deepcopy(stock))))
        if name in REFERENCES:
            build, what = REFERENCES[name]
            try:
                models[f'{name} ({what})'] = classifier(build(stock))
                peers[name] = f'{name} ({what})'
            except ImportError as e:
                print(f'{name}: no peer ({e}); install mmpetl[benchmark]')
    del models['stock']
    inputs = torch.randn(args.batch_size, 3, args.img_size, args.img_size)
    labels = torch.arange(args.batch_size) % 10
    load = os.getloadavg()[0]
    times = time_models(models, inputs, labels, rounds=args.rounds)
    spread = times['floor']['spread']
    print(f'ViT {args.arch} at {args.img_size}px, batch {args.batch_size}, '
          f'{args.rounds} interleaved rounds, {torch.get_num_threads()} '
          f'threads; load average {load:.2f} before, '
          f'{os.getloadavg()[0]:.2f} after; noise (max-min)/median of the '
          f'floor step {spread:.2f}')
    print('| method | peer | step / peer | step / floor | '
          'inference / peer | inference / stock |')
    print('| --- | --- | ---: | ---: | ---: | ---: |')
    floor = times['floor']
    for name in args.methods:
        t = times[name]
        peer = times.get(peers.get(name))
        print(f'| {name} | {peers.get(name, "-")} | '
              f'{t["step"] / peer["step"]:.3f} | ' if peer else
              f'| {name} | - | - | ', end='')
        print(f'{t["step"] / floor["step"]:.3f} | ', end='')
        print(f'{t["infer"] / peer["infer"]:.3f} | ' if peer else '- | ',
              end='')
        print(f'{t["infer"] / floor["infer"]:.3f} |')
    for name, peer in peers.items():
        p = times[peer]
        print(f'| {peer} | - | - | {p["step"] / floor["step"]:.3f} | - | '
              f'{p["infer"] / floor["infer"]:.3f} |')


if __name__ == '__main__':
    main()
