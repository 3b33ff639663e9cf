# VPT-shallow: 10 prompt tokens after the class token, at the input; the
# quickstart's settings (configs/quickstart/) on the comparison's recipe (the
# same data, optimiser and schedule as every method) and search split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_vpt-shallow.py',
    './search_split.py',
]
