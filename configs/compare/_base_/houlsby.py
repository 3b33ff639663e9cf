# Houlsby adapters (bottleneck 8) after every attention and MLP; the
# quickstart's settings (configs/quickstart/) on the comparison's recipe (the
# same data, optimiser and schedule as every method) and search split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_houlsby.py',
    './search_split.py',
]
