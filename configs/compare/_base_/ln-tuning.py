# LN-tuning: every norm's weight and bias trains; the quickstart's settings
# (configs/quickstart/) on the comparison's recipe (the same data, optimiser
# and schedule as every method) and search split.
_base_ = [
    '../../quickstart/vit-tiny_digits5-9_ln-tuning.py',
    './search_split.py',
]
