# Baseline: every parameter trains, with mmaction2's Video Swin-B recipe.
_base_ = ['./_base_/swin-b_k400.py']
