# VPT-deep: 10 prompt tokens after the class token, new at every layer; the
# quickstart's settings (configs/quickstart/) on the comparison's recipe (the
# same data, optimiser and schedule as every method) and search split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_vpt-deep.py',
    './search_split.py',
]
