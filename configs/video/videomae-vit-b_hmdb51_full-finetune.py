# Baseline: every parameter trains (the stock model) with VideoMAE's
# fine-tuning lr (1e-3 x batch / 256, batch 64) and wd 0.05.
_base_ = ['./_base_/videomae-vit-b_hmdb51.py']

optim_wrapper = dict(optimizer=dict(lr=2.5e-4, weight_decay=0.05))
