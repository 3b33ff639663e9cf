# FacT-TK: the increments as one tensor (shared core, per-matrix factor); the
# quickstart's settings (configs/quickstart/) on the comparison's recipe (the
# same data, optimiser and schedule as every method) and search split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_fact-tk.py',
    './search_split.py',
]
