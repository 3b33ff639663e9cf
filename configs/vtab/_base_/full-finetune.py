# Baseline: every backbone weight trains (the stock backbone, unwrapped).
_base_ = ['./vtab1k.py']
