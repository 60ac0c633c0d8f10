"""BatchNorm folded into the convolution before it, for inference.

A frozen (or eval-mode) BatchNorm after a convolution is an affine map per output channel,
``y = conv(x) * scale + shift`` with ``scale = weight / sqrt(running_var + eps)`` and
``shift = bias - running_mean * scale``; it equals one convolution with weights ``W * scale`` and bias
``b * scale + shift``. Folding removes the BatchNorm's operators (five per layer, two passes over the activations)
from every forward. The results differ from the unfolded network only by float rounding (the product is formed
once in the weights instead of on every activation).
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from maskrt.model.backbone import FrozenBatchNorm2d

_NORMS = (FrozenBatchNorm2d, nn.BatchNorm2d)


def _affine(norm: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, shift) of a frozen or eval-mode BatchNorm, in float32."""
    c = norm.running_mean.shape[0]
    weight = norm.weight.float() if norm.weight is not None else torch.ones(c, device=norm.running_mean.device)
    bias = norm.bias.float() if norm.bias is not None else torch.zeros(c, device=norm.running_mean.device)
    scale = weight * (norm.running_var.float() + norm.eps).rsqrt()
    return scale, bias - norm.running_mean.float() * scale


def _fold_pair(conv: nn.Conv2d, norm: nn.Module) -> None:
    scale, shift = _affine(norm)
    dtype = conv.weight.dtype
    with torch.no_grad():
        weight = conv.weight.float() * scale.reshape(-1, 1, 1, 1)
        bias = shift if conv.bias is None else conv.bias.float() * scale + shift
        conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
        conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)


def _foldable(conv, norm) -> bool:
    if not isinstance(conv, nn.Conv2d) or not isinstance(norm, _NORMS):
        return False
    if isinstance(norm, nn.BatchNorm2d) and (norm.training or norm.running_mean is None):
        return False
    return conv.out_channels == norm.running_mean.shape[0]


def fold_batchnorm(model: nn.Module) -> tuple[nn.Module, int]:
    """A copy of ``model`` (eval mode) with every BatchNorm that directly follows a convolution folded into it
    and replaced by ``nn.Identity``. Returns (copy, number of BatchNorms folded); ``model`` is left unchanged.

    Pairs are found by structure: ``convN`` followed by ``bnN`` in a block (ResNet), and a Conv2d followed by a
    norm inside an ``nn.Sequential`` (stems, downsamples, conv-norm-activation layers).
    """
    folded = copy.deepcopy(model).eval()
    count = 0
    for module in folded.modules():
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                conv, norm = module._modules[a], module._modules[b]
                if _foldable(conv, norm):
                    _fold_pair(conv, norm)
                    module._modules[b] = nn.Identity()
                    count += 1
        for i in range(1, 10):
            conv, norm = getattr(module, f"conv{i}", None), module._modules.get(f"bn{i}")
            if conv is None:
                break
            if _foldable(conv, norm):
                _fold_pair(conv, norm)
                module._modules[f"bn{i}"] = nn.Identity()
                count += 1
    return folded, count
