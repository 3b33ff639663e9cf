# Pfeiffer adapters (bottleneck 8) after every MLP; the quickstart's settings
# (configs/quickstart/) on the comparison's recipe (the same data, optimiser
# and schedule as every method) and search split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_pfeiffer.py',
    './search_split.py',
]
