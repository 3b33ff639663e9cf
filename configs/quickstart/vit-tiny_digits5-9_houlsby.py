# Houlsby adapters: a sequential bottleneck (ReLU) after the attention and
# after the MLP of every layer. Non-linear: it does not fold, so no merged
# checkpoint is written; deploy the adapter checkpoint with this config.
_base_ = ['./_base_/digits5-9_transfer.py']

model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.HoulsbyAdapterBackbone',
        backbone=_base_.pretrained_vit,
        bottleneck=8))
