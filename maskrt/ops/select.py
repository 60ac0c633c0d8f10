"""Top-k with a defined order for ties."""

from __future__ import annotations

import torch
from torch import Tensor


def topk_stable(x: Tensor, k: int, dim: int = -1) -> tuple[Tensor, Tensor]:
    """The ``k`` largest values along ``dim``, sorted descending; equal values keep their index order.

    ``torch.topk`` leaves the order of ties unspecified, and backends differ; a model whose scores saturate
    (softmax exactly 1.0 is common for confident detections) would then rank detections differently on each
    backend. This is top-k under "larger value first, then smaller index", which ONNX Runtime's TopK also
    follows, so while exporting it is written as a plain TopK.
    """
    if torch.jit.is_tracing() or torch.onnx.is_in_onnx_export():
        return torch.topk(x, k, dim=dim, largest=True, sorted=True)
    values, index = torch.sort(x, dim=dim, descending=True, stable=True)
    return values.narrow(dim, 0, k), index.narrow(dim, 0, k)
