"""ONNX export rules for maskrt's fixed-shape custom ops (TorchScript exporter symbolic functions).

``maskrt::batched_nms_mask`` becomes ``NonMaxSuppression`` over a (B, categories, N) score tensor (each box
scores only in its own category; invalid boxes score -1, below the -0.5 threshold) and a ``ScatterND`` that
turns the selected indices back into a (B, N) keep mask.

``maskrt::multilevel_roi_align`` becomes FPN level assignment, one stable counting sort of the RoIs by level
(``CumSum`` of one-hot levels: no ``TopK``, whose K TensorRT limits to 3840), one ``RoiAlign`` per level on its
contiguous slice, a ``Concat`` and one ``Gather`` that restores the RoIs' order. ``coordinate_transformation_mode`` and ``sampling_ratio`` are always written:
their defaults differ between the ONNX spec, ONNX Runtime and TensorRT's parser. Under
``export_target("tensorrt")`` it becomes one TensorRT plugin node instead (:mod:`maskrt.export.tensorrt_target`).
"""

from __future__ import annotations

import contextlib
import contextvars
import math

import torch
from torch.onnx import symbolic_helper as sh

_ONNX_FLOAT = 1
_ONNX_INT64 = 7
_ONNX_BOOL = 9

#: Export target the rules write for: "portable" (standard ONNX ops) or "tensorrt" (plugin nodes for RoI pooling).
_TARGET: contextvars.ContextVar[str] = contextvars.ContextVar("maskrt_export_target", default="portable")


@contextlib.contextmanager
def export_target(target: str):
    """Within the block, the rules write the graph for ``target`` (see :mod:`maskrt.export.tensorrt_target`)."""
    token = _TARGET.set(target)
    try:
        yield
    finally:
        _TARGET.reset(token)


def _const(g, value, dtype=torch.float32):
    return g.op("Constant", value_t=torch.tensor(value, dtype=dtype))


def _unsqueeze(g, x, axis: int):
    return g.op("Unsqueeze", x, _const(g, [axis], torch.int64))


def _squeeze(g, x, axis: int):
    return g.op("Squeeze", x, _const(g, [axis], torch.int64))


def _slice(g, x, start, end, axis: int):
    """Slice with tensor (1-D int64) or int bounds along one axis."""
    if isinstance(start, int):
        start = _const(g, [start], torch.int64)
    if isinstance(end, int):
        end = _const(g, [end], torch.int64)
    return g.op("Slice", x, start, end, _const(g, [axis], torch.int64))


@sh.parse_args("v", "v", "v", "v", "f", "i", "i")
def batched_nms_mask(g, boxes, scores, idxs, valid, iou_threshold, num_categories, max_per_category=0):
    categories = _const(g, list(range(num_categories)), torch.int64)
    categories = g.op("Reshape", categories, _const(g, [1, num_categories, 1], torch.int64))
    member = g.op("Equal", _unsqueeze(g, g.op("Cast", idxs, to_i=_ONNX_INT64), 1), categories)  # (B, C, N)
    member = g.op("And", member, _unsqueeze(g, g.op("Cast", valid, to_i=_ONNX_BOOL), 1))
    per_category = g.op("Where", member, _unsqueeze(g, scores, 1), _const(g, -1.0))
    selected = g.op(
        "NonMaxSuppression",
        boxes,
        per_category,
        # The cap bounds what TensorRT allocates for the selected indices (batch x categories x min(boxes, cap)).
        _const(g, [max_per_category if max_per_category > 0 else 2**31 - 1], torch.int64),
        _const(g, [iou_threshold], torch.float32),
        _const(g, [-0.5], torch.float32),
        center_point_box_i=0,
    )  # (S, 3): batch, category, box
    where = g.op("Concat", _slice(g, selected, 0, 1, 1), _slice(g, selected, 2, 3, 1), axis_i=1)  # (S, 2)
    count = _slice(g, g.op("Shape", selected), 0, 1, 0)
    ones = g.op("ConstantOfShape", count, value_t=torch.tensor([1.0]))
    zeros = g.op("ConstantOfShape", g.op("Shape", scores), value_t=torch.tensor([0.0]))
    keep = g.op("ScatterND", zeros, where, ones)
    return g.op("Cast", keep, to_i=_ONNX_BOOL)


def multilevel_roi_align(g, features, rois, scales, output_height, output_width, sampling_ratio, aligned, mode,
                         canonical_scale, canonical_level):
    maps = sh._unpack_list(features)
    scales = sh._parse_arg(scales, "fs")
    output_height = sh._parse_arg(output_height, "i")
    output_width = sh._parse_arg(output_width, "i")
    sampling_ratio = sh._parse_arg(sampling_ratio, "i")
    aligned = bool(sh._parse_arg(aligned, "b"))
    mode = sh._parse_arg(mode, "s")
    canonical_scale = sh._parse_arg(canonical_scale, "i")
    canonical_level = sh._parse_arg(canonical_level, "i")
    if _TARGET.get() == "tensorrt":
        from maskrt.export.tensorrt_target import plugin_node

        return plugin_node(g, maps, rois, scales, output_height, output_width, sampling_ratio, aligned, mode,
                           canonical_scale, canonical_level)
    attrs = dict(
        mode_s=mode,
        output_height_i=output_height,
        output_width_i=output_width,
        sampling_ratio_i=max(int(sampling_ratio), 0),
        coordinate_transformation_mode_s="half_pixel" if aligned else "output_half_pixel",
    )
    boxes = _slice(g, rois, 1, 5, 1)  # (K, 4)
    batch = g.op("Cast", _squeeze(g, _slice(g, rois, 0, 1, 1), 1), to_i=_ONNX_INT64)  # (K,)
    if len(maps) == 1:
        return g.op("RoiAlign", maps[0], boxes, batch, spatial_scale_f=float(scales[0]), **attrs)

    k_min = int(-math.log2(scales[0]))
    k_max = int(-math.log2(scales[-1]))
    x1 = _slice(g, boxes, 0, 1, 1)
    y1 = _slice(g, boxes, 1, 2, 1)
    x2 = _slice(g, boxes, 2, 3, 1)
    y2 = _slice(g, boxes, 3, 4, 1)
    area = g.op("Mul", g.op("Sub", x2, x1), g.op("Sub", y2, y1))
    size = g.op("Sqrt", area)
    log2 = g.op("Div", g.op("Log", g.op("Div", size, _const(g, float(canonical_scale)))), _const(g, math.log(2.0)))
    level = g.op("Floor", g.op("Add", g.op("Add", _const(g, float(canonical_level)), log2), _const(g, 1e-6)))
    level = g.op("Clip", level, _const(g, float(k_min)), _const(g, float(k_max)))
    level = g.op("Sub", _squeeze(g, level, 1), _const(g, float(k_min)))  # (K,) float, exact small integers

    # A stable counting sort by level, without TopK (TensorRT's TopK takes K <= 3840, and K here is every RoI of
    # the batch): the position of RoI i in level order is the number of RoIs on lower levels plus the number on
    # its own level before it. Counts are sums of 0/1 in fp32, exact for any realistic K.
    num_levels = len(maps)
    onehot = g.op("Cast", g.op("Equal", _unsqueeze(g, level, 1), _const(g, [[float(lvl) for lvl in range(num_levels)]])),
                  to_i=_ONNX_FLOAT)  # (K, L)
    axis0 = _const(g, 0, torch.int64)
    rank = g.op("ReduceSum", g.op("Mul", onehot, g.op("CumSum", onehot, axis0)), _const(g, [1], torch.int64),
                keepdims_i=0)  # (K,): 1 + the number of earlier RoIs on the same level
    counts = g.op("ReduceSum", onehot, _const(g, [0], torch.int64), keepdims_i=0)  # (L,)
    starts = g.op("CumSum", counts, axis0, exclusive_i=1)  # (L,): first sorted position of each level
    level_index = g.op("Cast", level, to_i=_ONNX_INT64)
    position = g.op("Cast", g.op("Sub", g.op("Add", g.op("Gather", starts, level_index, axis_i=0), rank),
                                 _const(g, 1.0)), to_i=_ONNX_INT64)  # (K,): where RoI i goes
    num = _slice(g, g.op("Shape", rois), 0, 1, 0)  # (1,) int64
    index = g.op("Range", _const(g, 0, torch.int64), _squeeze(g, num, 0), _const(g, 1, torch.int64))
    order = g.op("ScatterElements", g.op("ConstantOfShape", num, value_t=torch.tensor([0], dtype=torch.int64)),
                 position, index, axis_i=0)  # (K,): the RoI at each sorted position
    sorted_boxes = g.op("Gather", boxes, order, axis_i=0)
    sorted_batch = g.op("Gather", batch, order, axis_i=0)

    pooled = []
    starts_int = g.op("Cast", starts, to_i=_ONNX_INT64)
    counts_int = g.op("Cast", counts, to_i=_ONNX_INT64)
    for lvl, (feature, scale) in enumerate(zip(maps, scales)):
        start = _slice(g, starts_int, lvl, lvl + 1, 0)
        end = g.op("Add", start, _slice(g, counts_int, lvl, lvl + 1, 0))
        pooled.append(
            g.op("RoiAlign", feature, _slice(g, sorted_boxes, start, end, 0), _slice(g, sorted_batch, start, end, 0),
                 spatial_scale_f=float(scale), **attrs)
        )
    merged = g.op("Concat", *pooled, axis_i=0)
    return g.op("Gather", merged, position, axis_i=0)  # back to the RoIs' own order


_REGISTERED: set[int] = set()


def register(opset: int) -> None:
    """Register the export rules for ``opset`` (idempotent)."""
    if opset in _REGISTERED:
        return
    from maskrt.ops import library  # noqa: F401  (the ops must exist before their rules)

    torch.onnx.register_custom_op_symbolic("maskrt::batched_nms_mask", batched_nms_mask, opset)
    torch.onnx.register_custom_op_symbolic("maskrt::multilevel_roi_align", multilevel_roi_align, opset)
    _REGISTERED.add(opset)
