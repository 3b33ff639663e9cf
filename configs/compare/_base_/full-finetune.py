# Baseline: every backbone weight trains.
_base_ = ['./transfer.py']
