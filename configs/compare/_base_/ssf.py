# SSF: a trained scale and shift after the patch embedding, every norm and
# linear; the quickstart's settings (configs/quickstart/) on the comparison's
# recipe (the same data, optimiser and schedule as every method) and search
# split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_ssf.py',
    './search_split.py',
]
