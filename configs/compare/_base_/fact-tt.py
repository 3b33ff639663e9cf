# FacT-TT: factorised increments (rank 8) of qkv, proj, fc1 and fc2; the
# quickstart's settings (configs/quickstart/) on the comparison's recipe (the
# same data, optimiser and schedule as every method) and search split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_fact-tt.py',
    './search_split.py',
]
