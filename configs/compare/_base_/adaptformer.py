# AdaptFormer: a bottleneck (8) branch parallel to every MLP; the
# quickstart's settings (configs/quickstart/) on the comparison's recipe (the
# same data, optimiser and schedule as every method) and search split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_adaptformer.py',
    './search_split.py',
]
