# Step 1 of the demo: pre-train the tiny ViT from scratch on digits 0-4.
_base_ = ['./_base_/vit-tiny_digits.py']
