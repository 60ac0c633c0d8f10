"""CUDA kernels for maskrt's custom ops, registered for torch.library's CUDA dispatch key.

:func:`register_cuda_kernels` compiles ``maskrt/plugins/csrc/torch_ext/maskrt_torch_cuda.cu`` (with the C ABI's
``mlra_common.cpp``) on first use with
``torch.utils.cpp_extension.load`` (needs nvcc and a CUDA build of PyTorch; the build is cached by PyTorch under
``TORCH_EXTENSIONS_DIR``) and registers:

* ``maskrt::multilevel_roi_align`` -> the fused multi-level RoI Align kernel (the TensorRT plugin's math; fp32 or
  fp16 maps, fp32 RoIs, one launch);
* ``maskrt::batched_nms_mask`` -> :func:`nms_runs` (fixed-shape torch ops on the device: two stable sorts and a
  search for each category's run) then one kernel that runs greedy NMS per (category, image) and writes the
  keep mask. Nothing is read back by the host.

Without them the ops' Python implementations run on CUDA too: the RoI Align one is fixed-shape (no host sync);
the NMS one reads the boxes back to the host. ``MASKRT_CUDA_KERNELS=0`` disables the kernels.
"""

from __future__ import annotations

import os
from typing import Optional

import torch
from torch import Tensor

from maskrt.core.errors import MaskrtError

_STATE: dict = {"ext": None, "error": None, "registered": False}
SOURCE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins", "csrc", "torch_ext",
                      "maskrt_torch_cuda.cu")
MLRA_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "plugins", "csrc",
                        "multilevel_roi_align")
# Everything the extension links: the kernels, and the C ABI's host functions they call (status strings). The link
# of a Python extension leaves undefined symbols to import time, so a missing file shows only as an ImportError
# on the GPU machine; tests/ops/test_cuda_kernels.py links these here and looks for undefined maskrt symbols.
SOURCES = [SOURCE, os.path.join(MLRA_DIR, "mlra_common.cpp")]


def enabled() -> bool:
    return os.environ.get("MASKRT_CUDA_KERNELS", "1") != "0"


def load_extension(verbose: bool = False):
    """Compile (once, cached by PyTorch) and import the extension; raises :class:`MaskrtError` with the
    compiler's last line when that fails."""
    if _STATE["ext"] is not None:
        return _STATE["ext"]
    if _STATE["error"] is not None:
        raise MaskrtError(_STATE["error"])
    try:
        from torch.utils.cpp_extension import load

        _STATE["ext"] = load(name="maskrt_torch_cuda", sources=SOURCES, extra_include_paths=[MLRA_DIR],
                             extra_cuda_cflags=["-O3"], verbose=verbose)
    except Exception as e:  # compiler missing, CPU-only torch, ...
        lines = [line for line in str(e).strip().splitlines() if line.strip()]
        _STATE["error"] = ("maskrt's CUDA kernels could not be built (" + (lines[-1] if lines else type(e).__name__)
                           + "); the custom ops run their PyTorch implementations (set MASKRT_CUDA_KERNELS=0 to "
                           "skip the build)")
        raise MaskrtError(_STATE["error"]) from e
    return _STATE["ext"]


def nms_runs(boxes: Tensor, scores: Tensor, idxs: Tensor, valid: Tensor, num_categories: int):
    """The NMS kernel's inputs, with fixed shapes: boxes sorted by (category, score descending), both stable;
    ``order`` (B, N) the original index of each sorted position; ``starts``/``ends`` (B, C) each category's run.
    Invalid boxes get category ``num_categories`` (after every run), so they are never visited."""
    b = scores.shape[0]
    ranked = torch.where(valid, scores.float(), torch.full((), float("-inf"), device=scores.device))
    order = torch.sort(ranked, dim=1, descending=True, stable=True)[1]
    category = torch.where(valid, idxs.to(torch.int64), torch.full((), num_categories, dtype=torch.int64,
                                                                        device=idxs.device))
    sorted_category, by_category = torch.sort(category.gather(1, order), dim=1, stable=True)
    order = order.gather(1, by_category)
    ids = torch.arange(num_categories, device=idxs.device).expand(b, num_categories).contiguous()
    starts = torch.searchsorted(sorted_category, ids)
    ends = torch.searchsorted(sorted_category, ids, right=True)
    sorted_boxes = boxes.float().gather(1, order[..., None].expand(-1, -1, 4))
    return sorted_boxes, order, starts, ends


def greedy_runs_reference(sorted_boxes: Tensor, order: Tensor, starts: Tensor, ends: Tensor, iou_threshold: float,
                          max_per_category: int = 0) -> Tensor:
    """What the NMS kernel computes, in Python loops (for tests on the CPU): per image and category, walk the run
    in order, keep a box not yet removed, remove the later ones with IoU > threshold."""
    from maskrt.ops.boxes import box_iou

    b, n = order.shape
    keep = torch.zeros((b, n), dtype=torch.bool)
    for i in range(b):
        for c in range(starts.shape[1]):
            s, e = int(starts[i, c]), int(ends[i, c])
            run = sorted_boxes[i, s:e]
            over = box_iou(run, run) > iou_threshold
            removed = [False] * (e - s)
            kept = 0
            for j in range(e - s):
                if removed[j]:
                    continue
                if max_per_category > 0 and kept >= max_per_category:
                    break
                kept += 1
                keep[i, int(order[i, s + j])] = True
                for t in range(j + 1, e - s):
                    removed[t] = removed[t] or bool(over[j, t])
    return keep


def register_cuda_kernels(verbose: bool = False) -> bool:
    """Register the CUDA kernels (see the module docstring). True when registered (now or before); False when
    CUDA is absent or the kernels are disabled; raises :class:`MaskrtError` when the build fails."""
    if _STATE["registered"]:
        return True
    if not enabled() or not torch.cuda.is_available():
        return False
    ext = load_extension(verbose)
    from maskrt.ops import library

    @library.multilevel_roi_align_op.register_kernel("cuda")
    def _roi_align_cuda(features, rois, scales, output_height, output_width, sampling_ratio, aligned, mode,
                        canonical_scale, canonical_level):
        return ext.multilevel_roi_align(list(features), rois.float(), [float(s) for s in scales], output_height,
                                        output_width, sampling_ratio, aligned, mode, canonical_scale,
                                        canonical_level)

    @library.batched_nms_mask.register_kernel("cuda")
    def _nms_cuda(boxes, scores, idxs, valid, iou_threshold, num_categories, max_per_category=0):
        sorted_boxes, order, starts, ends = nms_runs(boxes, scores, idxs, valid, num_categories)
        return ext.nms_keep_mask(sorted_boxes, order, starts, ends, iou_threshold, max_per_category)

    _STATE["registered"] = True
    return True


def registered() -> bool:
    """Whether the CUDA kernels serve the custom ops in this process (else CUDA tensors run their PyTorch code)."""
    return bool(_STATE["registered"])


def registration_error() -> Optional[str]:
    return _STATE["error"]
