# The protocol's search split (tools/suites/vtab.py --search): train on
# search_train.txt, evaluate on search_val.txt, both cut from train.txt
# (20% of each class held out) by mmpetl.datasets.write_holdout_split.
search_data = dict(
    train=dict(ann_file='search_train.txt'),
    val=dict(ann_file='search_val.txt'))
