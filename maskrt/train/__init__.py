"""Training Mask R-CNN on maskrt's synthetic shapes: losses (:mod:`maskrt.train.losses`) and a compact loop
(:mod:`maskrt.train.loop`).

The inference model keeps its trunk's batch norms frozen (FrozenBatchNorm2d). :func:`trainable` returns the
same model with trainable ``nn.BatchNorm2d`` layers in their place (same parameter names), and
:func:`inference_state_dict` gives the weights back in the inference layout, running statistics included.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from maskrt.model.backbone import FrozenBatchNorm2d


def trainable(model: nn.Module) -> nn.Module:
    """Replace every FrozenBatchNorm2d of ``model`` (in place) by an ``nn.BatchNorm2d`` with the same eps and
    statistics, so that the trunk trains from scratch; returns ``model``."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, FrozenBatchNorm2d):
                bn = nn.BatchNorm2d(child.weight.shape[0], eps=child.eps)
                with torch.no_grad():
                    bn.weight.copy_(child.weight)
                    bn.bias.copy_(child.bias)
                    bn.running_mean.copy_(child.running_mean)
                    bn.running_var.copy_(child.running_var)
                setattr(module, child_name, bn)
    return model


def inference_state_dict(model: nn.Module) -> OrderedDict[str, torch.Tensor]:
    """``model``'s weights in the inference layout: batch-norm counters dropped, tensors detached and contiguous."""
    return OrderedDict(
        (k, v.detach().contiguous().clone()) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")
    )


__all__ = ["inference_state_dict", "trainable"]
