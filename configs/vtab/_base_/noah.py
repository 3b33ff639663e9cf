# NOAH (Zhang, Zhou, Liu 2022), stages 1 and 2: the supernet over Adapter,
# LoRA and VPT (per layer a dimension from {1, 5, 10} for the first
# {3, 6, 9, 12} layers of each module: the reference's VTAB-1k space) trained
# one-shot (a random subnet per iteration) on train800 for 500 epochs
# (AdamW lr 5e-4, wd 1e-4, 10 warm-up epochs), then the evolutionary search
# on val200 (`noah.search`), then the found subnet retrained with
# `noah.retrain` (the shared VTAB-1k recipe, ./noah-subnet.py).
# `tools/suites/vtab.py --methods noah` runs the three stages in order.
_base_ = ['./noah-subnet.py']

max_epochs = 500
model = dict(
    backbone=dict(
        # depths None: quarters of the layer count, (3, 6, 9, 12) at 12.
        search_space=dict(
            prompt=dict(dims=(1, 5, 10), depths=None),
            lora=dict(dims=(1, 5, 10), depths=None),
            adapter=dict(dims=(1, 5, 10), depths=None))))
train_dataloader = dict(dataset=dict(split='train800'))
val_dataloader = dict(dataset=dict(split='val200'))
test_dataloader = dict(dataset=dict(split='val200'))
optim_wrapper = dict(optimizer=dict(lr=5e-4))
param_scheduler = [
    dict(type='mmpetl.TimmCosineLR', T=max_epochs, warmup=10,
         warmup_start=1e-6, eta_min=1e-5, lag=1, by_epoch=True),
]
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
custom_hooks = [
    dict(type='mmpetl.ParameterCountHook'),
    dict(type='mmpetl.NOAHSupernetHook', seed=0),
]
# Each step trains one subnet: DDP must accept unused parameters.
model_wrapper_cfg = dict(
    type='MMDistributedDataParallel', find_unused_parameters=True)

noah = dict(
    # The reference's evolution.py settings (15 epochs: its VTAB-1k
    # script); param_limit in trainable parameters (head excluded).
    search=dict(population=50, select=10, mutation=25, crossover=25,
                m_prob=0.2, s_prob=0.4, epochs=15, param_limit=640_000,
                min_param_limit=0, seed=0),
    # The retraining run's top-level settings and splits.
    retrain=dict(
        optim_wrapper=_base_.optim_wrapper,
        param_scheduler=_base_.param_scheduler,
        train_cfg=_base_.train_cfg,
        train_split='train800val200',
        test_split='test'))
