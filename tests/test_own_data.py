# Copyright (c) mmpetl contributors. All rights reserved.
"""docs/en/own_data.md's config is real: on a generated image folder (one
folder per class, mmpretrain's CustomDataset) it builds, trains, writes an
adapter checkpoint that load_adapter() rebuilds, and a merged checkpoint
that the stock model loads and that computes the adapter model."""
import copy
import os.path as osp

import numpy as np
import torch
from mmengine.config import Config
from mmengine.runner import Runner
from PIL import Image

import mmpetl
from mmpretrain.registry import MODELS
from tests.support.helpers import pretrained_cfg

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIG = osp.join(ROOT, 'configs', 'examples',
                  'vit-b16_repadapter_image-folder.py')
CLASSES = ('cat', 'dog', 'fox')
#: ViT-B/16's layout at width 32, two layers: the config's pipeline (224x224)
#: as it is, a CPU-sized model.
TINY_VIT_B16 = dict(
    type='mmpretrain.VisionTransformer',
    arch=dict(embed_dims=32, num_layers=2, num_heads=2,
              feedforward_channels=64),
    img_size=224,
    patch_size=16)


def write_image_folder(root, per_class=2):
    rng = np.random.default_rng(0)
    for split in ('train', 'val'):
        for name in CLASSES:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                pixels = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / f'{i:03d}.jpg')


def test_image_folder_config_trains_loads_and_folds(tmp_path):
    write_image_folder(tmp_path / 'my_images')
    cfg = Config.fromfile(CONFIG)
    assert cfg.train_dataloader.dataset.type == 'CustomDataset'
    assert cfg.model.head.num_classes == len(CLASSES)
    # The shipped recipe, on the generated folder and a tiny ViT-B/16.
    backbone_cfg = pretrained_cfg(TINY_VIT_B16, tmp_path / 'pretrained.pth')
    cfg.model.backbone.backbone = copy.deepcopy(backbone_cfg)
    cfg.model.head.in_channels = 32
    for loader in (cfg.train_dataloader, cfg.val_dataloader):
        loader.dataset.data_root = str(tmp_path / 'my_images')
        loader.update(batch_size=6, num_workers=0, persistent_workers=False)
    cfg.test_dataloader = cfg.val_dataloader
    cfg.train_cfg.update(max_epochs=1, val_interval=1)
    cfg.work_dir = str(tmp_path / 'work')
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 1  # 6 images, batch 6: one step
    assert runner.train_dataloader.dataset.CLASSES == CLASSES

    # The adapter file rebuilds the trained backbone from the stock one.
    model = runner.model.eval()
    x = torch.randn(2, 3, 224, 224)
    loaded = mmpetl.load_adapter(osp.join(cfg.work_dir, 'epoch_1.pth'),
                                 copy.deepcopy(backbone_cfg)).eval()
    with torch.no_grad():
        trained = model.backbone(x)[0]
        assert torch.equal(loaded(x)[0], trained)

    # The merged files are a stock model computing the adapter model.
    merged_cfg = Config.fromfile(
        osp.join(cfg.work_dir, 'epoch_1_merged_config.py'))
    assert merged_cfg.model.backbone.type == TINY_VIT_B16['type']
    stock = MODELS.build(merged_cfg.model).eval()
    merged = torch.load(osp.join(cfg.work_dir, 'epoch_1_merged.pth'),
                        weights_only=True)['state_dict']
    stock.load_state_dict(merged, strict=True)
    with torch.no_grad():
        torch.testing.assert_close(
            stock(x, mode='tensor'), model(x, mode='tensor'),
            rtol=1e-4, atol=1e-5)
