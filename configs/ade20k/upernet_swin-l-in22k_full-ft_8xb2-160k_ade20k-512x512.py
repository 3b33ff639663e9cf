# Full fine-tuning: mmseg's recipe (AdamW lr 6e-5, weight decay 0.01, poly).
_base_ = ['./_base_/upernet_swin-l-in22k_8xb2-160k_ade20k-512x512.py']
