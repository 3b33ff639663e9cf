# Copyright (c) mmpetl contributors. All rights reserved.
"""The same method in mmpetl and in a peer implementation, on the same
module, timed in one run.

Peers: `peft <https://github.com/huggingface/peft>`_'s LoRA and DoRA
(``inject_adapter_in_model`` on the stock backbone's ``qkv`` linears; an
optional benchmark dependency, ``pip install mmpetl[benchmark]``), and
for methods no package implements, their reference formulas written as
forward hooks on the stock modules (:data:`REFERENCES`): SSF's
``y * gamma + beta`` after each ``qkv``, ``proj``, ``fc1``, ``fc2`` and norm,
AdaptFormer's ``s * up(relu(down(x)))`` beside each FFN.

Each model is the backbone with the same linear head on its class token.
A training step is forward, cross-entropy, backward and an AdamW step over
the trainable parameters; inference is a forward in evaluation mode without
autograd (mmpetl's adapters unmerged). Models are timed in interleaved
rounds (round ``r`` times every model once) so that a shared machine's load
hits them alike; figures are medians.
"""
import copy
import statistics
import time
from typing import Callable, Dict, List

import torch
import torch.nn.functional as F
from torch import nn


__all__ = ['REFERENCES', 'peft_lora', 'reference_ssf',
           'reference_adaptformer', 'Classifier', 'time_models']


class Classifier(nn.Module):
    """``backbone`` + a linear head on its last output (class token)."""

    def __init__(self, backbone: nn.Module, width: int, classes: int = 10):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        out = self.backbone(x)
        while isinstance(out, (tuple, list)):
            out = out[-1]
        return self.head(out)


def peft_lora(backbone: nn.Module, rank: int = 8, alpha: int = 8,
              dropout: float = 0.1, dora: bool = False) -> nn.Module:
    """peft's LoRA (or DoRA) on every ``layers.<i>.attn.qkv`` of a copy of
    ``backbone``; only its adapters train."""
    from peft import LoraConfig, inject_adapter_in_model
    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=dropout,
                        use_dora=dora,
                        target_modules=r'.*layers\.\d+\.attn\.qkv')
    model = copy.deepcopy(backbone)
    model.requires_grad_(False)
    model = inject_adapter_in_model(config, model)
    for name, param in model.named_parameters():
        param.requires_grad_('lora_' in name)
    return model


class _Affine(nn.Module):
    """SSF's per-channel ``gamma``, ``beta`` (reference init: N(1, 0.02),
    N(0, 0.02))."""

    def __init__(self, width: int):
        super().__init__()
        self.gamma = nn.Parameter(1 + 0.02 * torch.randn(width))
        self.beta = nn.Parameter(0.02 * torch.randn(width))

    def hook(self, module, args, out):
        return out * self.gamma + self.beta


def _hooked(backbone: nn.Module, pattern: Callable[[str, nn.Module], bool],
            make: Callable[[nn.Module], nn.Module],
            hook: str) -> nn.Module:
    """A frozen copy of ``backbone`` with ``make(module)`` hooked on each
    matching module (its parameters train)."""
    model = copy.deepcopy(backbone)
    model.requires_grad_(False)
    model.peers = nn.ModuleList()
    for name, module in list(model.named_modules()):
        if pattern(name, module):
            peer = make(module)
            model.peers.append(peer)
            getattr(module, f'register_forward_{hook}')(peer.hook)
    return model


def reference_ssf(backbone: nn.Module) -> nn.Module:
    """SSF's formula after every qkv, proj, fc1, fc2 and LayerNorm."""

    def site(name, module):
        return isinstance(module, nn.LayerNorm) or (
            isinstance(module, nn.Linear) and name.rsplit('.', 1)[-1] in
            ('qkv', 'proj') or name.endswith(('ffn.layers.0.0',
                                              'ffn.layers.1')))

    def make(module):
        width = (module.normalized_shape[0] if isinstance(
            module, nn.LayerNorm) else module.out_features)
        return _Affine(width)

    return _hooked(backbone, site, make, 'hook')


class _Parallel(nn.Module):
    """AdaptFormer's branch ``s * up(relu(down(x)))`` (bottleneck 64,
    s = 0.1, up zero-initialised) on the residual stream ``x`` that enters
    the block's FFN norm, added to the FFN's output."""

    def __init__(self, width: int, bottleneck: int = 64, scale: float = 0.1):
        super().__init__()
        self.down = nn.Linear(width, bottleneck)
        self.up = nn.Linear(bottleneck, width)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        self.scale = scale
        self.stream = None

    def keep(self, module, args):
        self.stream = args[0]

    def hook(self, module, args, out):
        stream, self.stream = self.stream, None
        return out + self.scale * self.up(F.relu(self.down(stream)))


def reference_adaptformer(backbone: nn.Module) -> nn.Module:
    """AdaptFormer's formula beside every layer's FFN (mmpretrain ViT:
    ``layers.<i>.ln2`` then ``layers.<i>.ffn``)."""
    model = _hooked(backbone, lambda name, m: name.endswith('.ffn'),
                    lambda m: _Parallel(m.embed_dims), 'hook')
    for layer, peer in zip(model.layers, model.peers):
        layer.ln2.register_forward_pre_hook(peer.keep)
    return model


#: Method name (of :data:`mmpetl.benchmarks.methods.METHODS`) -> peer
#: builder from the stock backbone, and what it is.
REFERENCES: Dict[str, tuple] = {
    'lora': (peft_lora, 'peft LoRA'),
    'dora': (lambda b: peft_lora(b, dora=True), 'peft DoRA'),
    'ssf': (reference_ssf, 'reference formula'),
    'adaptformer': (reference_adaptformer, 'reference formula'),
}


def time_models(models: Dict[str, nn.Module], inputs: torch.Tensor,
                labels: torch.Tensor, rounds: int = 5,
                warmup: int = 1) -> Dict[str, Dict[str, float]]:
    """Median seconds of a training step (``step``) and of an inference
    forward (``infer``) of each model, interleaved (see the module
    docstring), and the spread of its steps ((max - min) / median)."""
    optimizers = {
        name: torch.optim.AdamW(
            [p for p in m.parameters() if p.requires_grad], lr=1e-4)
        for name, m in models.items()
    }

    def step(name):
        model, optimizer = models[name], optimizers[name]
        model.train()
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(inputs), labels).backward()
        optimizer.step()

    @torch.no_grad()
    def infer(name):
        models[name].eval()
        models[name](inputs)

    times: Dict[str, Dict[str, List[float]]] = {
        name: dict(step=[], infer=[]) for name in models}
    for _ in range(warmup):
        for name in models:
            step(name)
            infer(name)
    for _ in range(rounds):
        for name in models:
            for kind, run in (('step', step), ('infer', infer)):
                start = time.perf_counter()
                run(name)
                times[name][kind].append(time.perf_counter() - start)
    return {
        name: dict(step=statistics.median(t['step']),
                   infer=statistics.median(t['infer']),
                   spread=(max(t['step']) - min(t['step'])) /
                   statistics.median(t['step']))
        for name, t in times.items()
    }
