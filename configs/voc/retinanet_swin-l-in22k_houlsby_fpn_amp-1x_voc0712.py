# Adapter (Houlsby): bottleneck adapters after the attention and the MLP of
# every block of the frozen Swin (bottleneck 8, s = 1); FPN and head train
# with the recipe of full fine-tuning. It does not fold: deploy the adapter
# checkpoint with this config.
_base_ = ['./_base_/retinanet_swin-l-in22k_fpn_amp-1x_voc0712.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='mmpetl.HoulsbyAdapterBackbone',
        backbone={{_base_.model.backbone}}))
custom_hooks = [dict(type='mmpetl.ParameterCountHook')]
