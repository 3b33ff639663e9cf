# Copyright (c) mmpetl contributors. All rights reserved.
import copy
import os.path as osp
from typing import Optional

import torch
from mmengine.dist import master_only
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import EpochBasedTrainLoop

from mmpetl.apis.reparam import META_KEY, stock_config
from mmpetl.fileio.checkpoint_io import atomic_output, check_finite
from mmpetl.models.merge import merge_adapters, merge_blockers
from mmpetl.registry import HOOKS


@HOOKS.register_module()
class ReparamCheckpointHook(Hook):
    """Save a merged (stock) checkpoint and its stock config when training
    ends, beside the adapter checkpoints.

    Writes ``{work_dir}/{stem}_merged.pth`` and ``{stem}_merged_config.py``
    with ``stem`` the last checkpoint's name (``epoch_N`` / ``iter_N``), the
    same files ``tools/reparam.py`` writes. A model that cannot be folded
    (:func:`~mmpetl.models.merge.merge_blockers`: a site that does not fold,
    E3VA's highway) gets a warning saying why, and no merged files.

    Args:
        out_dir (str, optional): Folder to write to. Defaults to the work dir.
    """

    # After the NORMAL-priority hooks. It merges the model in memory, so it
    # need not follow CheckpointHook (VERY_LOW: it runs after this one).
    priority = 'LOW'

    def __init__(self, out_dir: Optional[str] = None):
        self.out_dir = out_dir

    @master_only
    def after_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        blocked = merge_blockers(model)
        if blocked:  # e.g. ARC's reference Swin placement, E3VA
            runner.logger.warning(
                f'No merged checkpoint written: {blocked[0]}')
            return
        model = copy.deepcopy(model).cpu()
        model.eval()  # not chained: some backbones' train() returns None
        merged = merge_adapters(model, inplace=True)  # on the copy
        state_dict = merged.state_dict()
        check_finite(state_dict, 'the merged model')  # training diverged
        stem = (f'epoch_{runner.epoch}' if isinstance(
            runner.train_loop, EpochBasedTrainLoop) else f'iter_{runner.iter}')
        out_dir = self.out_dir or runner.work_dir
        ckpt_path = osp.join(out_dir, f'{stem}_merged.pth')
        cfg_path = osp.join(out_dir, f'{stem}_merged_config.py')
        stock = stock_config(runner.cfg)
        meta = dict(
            epoch=runner.epoch,
            iter=runner.iter,
            cfg=stock.pretty_text,
            dataset_meta=getattr(runner.train_dataloader.dataset, 'metainfo',
                                 None),
            **{META_KEY: dict(merged=True, source='ReparamCheckpointHook')})
        with atomic_output(ckpt_path) as tmp:
            torch.save(dict(meta=meta, state_dict=state_dict), tmp)
        with atomic_output(cfg_path) as tmp:
            stock.dump(tmp)
        runner.logger.info(f'Saved merged checkpoint {ckpt_path} and stock '
                           f'config {cfg_path}')
