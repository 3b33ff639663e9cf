# Copyright (c) mmpetl contributors. All rights reserved.
"""Real video frames built from photos that ship inside scikit-image,
written out in mmaction2's ``RawframeDataset`` layout.

Each clip is a camera move over one real photo: the frames are crops of the
photo along a path. The class is the move (pan right, pan left, zoom in), so
telling them apart needs the order of the frames, not one frame. Nothing is
downloaded.
"""
import os
import os.path as osp
from typing import Dict, Sequence

import numpy as np
from PIL import Image

from .embedded import complete_split_counts, write_split_lists

#: Classes, in label order.
MOTIONS = ('pan_right', 'pan_left', 'zoom_in')
#: Colour photos of ``skimage.data`` (file names in its data folder).
PHOTOS = ('astronaut.png', 'coffee.png', 'chelsea.png', 'rocket.jpg',
          'motorcycle_left.png', 'retina.jpg', 'hubble_deep_field.jpg',
          'ihc.png', 'color.png')


def _crop_boxes(motion: str, num_frames: int, width: int, height: int,
                start: float) -> np.ndarray:
    """``(num_frames, 4)`` crop boxes (left, top, right, bottom) of a move
    over a ``width`` x ``height`` photo. ``start`` in [0, 1) offsets it."""
    t = np.linspace(0., 1., num_frames)
    side = 0.6 * min(width, height)
    top = (height - side) * (0.2 + 0.6 * start)
    if motion == 'zoom_in':
        sides = side * (1. - 0.5 * t)
        cx = width * (0.35 + 0.3 * start)
        cy = top + side / 2
        return np.stack([cx - sides / 2, cy - sides / 2, cx + sides / 2,
                         cy + sides / 2], axis=1)
    travel = 0.5 * (width - side)
    lefts = (width - side - travel) * start + travel * (
        t if motion == 'pan_right' else 1. - t)
    return np.stack([lefts, np.full_like(t, top), lefts + side,
                     np.full_like(t, top + side)], axis=1)


def write_motion_task(root: str,
                      clips_per_photo: int = 2,
                      num_frames: int = 8,
                      size: int = 32,
                      test_photos: Sequence[str] = ('chelsea.png',
                                                    'ihc.png',
                                                    'color.png')
                      ) -> Dict[str, int]:
    """Write camera-motion clips over scikit-image's photos as raw frames.

    Layout (mmaction2's ``RawframeDataset``, default ``img_{:05}.jpg``
    frames starting at 1)::

        {root}/rawframes/{photo}_{motion}_{k}/img_00001.jpg ...
        {root}/train.txt, {root}/test.txt   # "frame_dir total_frames label"

    Clips of ``test_photos`` go to the test split, the others to train.
    Existing complete outputs are kept as they are.

    Args:
        root (str): Output folder.
        clips_per_photo (int): Clips per photo and class (other offsets).
        num_frames (int): Frames per clip.
        size (int): Frame side in pixels.
        test_photos (Sequence[str]): Photos of the test split.

    Returns:
        dict: Number of clips per split.
    """
    import skimage

    counts = complete_split_counts(root)
    if counts is not None:
        return counts
    data_dir = osp.join(osp.dirname(skimage.__file__), 'data')
    lines = dict(train=[], test=[])
    for photo in PHOTOS:
        image = Image.open(osp.join(data_dir, photo)).convert('RGB')
        split = 'test' if photo in test_photos else 'train'
        for label, motion in enumerate(MOTIONS):
            for k in range(clips_per_photo):
                clip = f'{osp.splitext(photo)[0]}_{motion}_{k}'
                clip_dir = osp.join(root, 'rawframes', clip)
                os.makedirs(clip_dir, exist_ok=True)
                boxes = _crop_boxes(motion, num_frames, *image.size,
                                    start=k / clips_per_photo)
                for index, box in enumerate(boxes, start=1):
                    frame = image.resize((size, size), Image.BILINEAR,
                                         box=tuple(float(b) for b in box))
                    frame.save(osp.join(clip_dir, f'img_{index:05d}.jpg'),
                               quality=95)
                lines[split].append(f'{clip} {num_frames} {label}\n')
    return write_split_lists(root, lines, mark_complete=True)
