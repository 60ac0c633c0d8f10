"""Slow, loop-by-loop reference implementations of the detection ops, written from their definitions.

Everything here is plain Python floats (IEEE float64) or float64 numpy, with explicit loops over RoIs, bins and
sample points; it is meant to be read, not to be fast. Inputs are numpy arrays (or anything ``np.asarray``
accepts); outputs are float64 / int64 numpy arrays.

Definitions (torchvision's kernels; maskrt adds a max mode for RoI Align and zeros for invalid RoIs):

* RoI Align: see :func:`roi_align_ref`.
* RoI Pool (quantized Fast R-CNN): see :func:`roi_pool_ref`.
* NMS / batched NMS: see :func:`nms_ref`, :func:`batched_nms_ref`.
* FPN level assignment (eq. 1) and multi-level RoI Align: see :func:`level_ref`, :func:`multilevel_roi_align_ref`.
"""

from __future__ import annotations

import math

import numpy as np


def _pair(output_size):
    if isinstance(output_size, int):
        return output_size, output_size
    return int(output_size[0]), int(output_size[1])


def _batch_index(value: float, n: int):
    """The image a RoI refers to, or None when its batch index is not a valid image (C++-style truncation)."""
    value = float(value)
    if not math.isfinite(value):
        return None
    b = int(value)  # truncation toward zero, like the kernels' integer cast
    return b if 0 <= b < n else None


# ----------------------------------------------------------------------------------------------- RoI Align


def bilinear_ref(plane: np.ndarray, y: float, x: float) -> float:
    """Bilinear value of a 2-D map at (y, x) with RoI Align's border rules (0 beyond one pixel outside)."""
    height, width = plane.shape
    if y < -1.0 or y > height or x < -1.0 or x > width:
        return 0.0
    y = max(y, 0.0)
    x = max(x, 0.0)
    y_low = int(y)
    x_low = int(x)
    if y_low >= height - 1:
        y_low = y_high = height - 1
        y = float(y_low)
    else:
        y_high = y_low + 1
    if x_low >= width - 1:
        x_low = x_high = width - 1
        x = float(x_low)
    else:
        x_high = x_low + 1
    ly = y - y_low
    lx = x - x_low
    hy = 1.0 - ly
    hx = 1.0 - lx
    return (
        hy * hx * float(plane[y_low, x_low])
        + hy * lx * float(plane[y_low, x_high])
        + ly * hx * float(plane[y_high, x_low])
        + ly * lx * float(plane[y_high, x_high])
    )


def roi_align_ref(
    input,
    rois,
    output_size,
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = False,
    mode: str = "avg",
) -> np.ndarray:
    """RoI Align over a (N, C, H, W) map and (K, 5) ``[batch, x1, y1, x2, y2]`` RoIs -> (K, C, PH, PW) float64.

    Per RoI: ``offset = 0.5 if aligned else 0``; ``start = corner * scale - offset``; ``roi = end - start``,
    at least 1 when not aligned. ``bin = roi / P``; grid = ``sampling_ratio`` if > 0 else ``ceil(roi / P)``.
    Sample ``start + p * bin + (i + 0.5) * bin / grid``; avg = sum / max(gh * gw, 1), max = largest sample
    value (0 for an empty bin). Invalid batch index or non-finite corners -> zeros.
    """
    x = np.asarray(input, dtype=np.float64)
    r = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    n, channels, height, width = x.shape
    ph_n, pw_n = _pair(output_size)
    out = np.zeros((r.shape[0], channels, ph_n, pw_n), dtype=np.float64)
    offset = 0.5 if aligned else 0.0
    for k in range(r.shape[0]):
        b = _batch_index(r[k, 0], n)
        if b is None or not all(math.isfinite(float(v)) for v in r[k, 1:]):
            continue
        x1, y1, x2, y2 = (float(v) for v in r[k, 1:])
        start_w = x1 * spatial_scale - offset
        start_h = y1 * spatial_scale - offset
        end_w = x2 * spatial_scale - offset
        end_h = y2 * spatial_scale - offset
        roi_w = end_w - start_w
        roi_h = end_h - start_h
        if not aligned:
            roi_w = max(roi_w, 1.0)
            roi_h = max(roi_h, 1.0)
        bin_h = roi_h / ph_n
        bin_w = roi_w / pw_n
        grid_h = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_h / ph_n)
        grid_w = sampling_ratio if sampling_ratio > 0 else math.ceil(roi_w / pw_n)
        count = max(grid_h * grid_w, 1)
        for c in range(channels):
            plane = x[b, c]
            for ph in range(ph_n):
                for pw in range(pw_n):
                    values = []
                    for iy in range(grid_h):  # range() of a value <= 0 is empty: no samples
                        yy = start_h + ph * bin_h + (iy + 0.5) * bin_h / grid_h
                        for ix in range(grid_w):
                            xx = start_w + pw * bin_w + (ix + 0.5) * bin_w / grid_w
                            values.append(bilinear_ref(plane, yy, xx))
                    if mode == "avg":
                        out[k, c, ph, pw] = sum(values) / count
                    elif mode == "max":
                        out[k, c, ph, pw] = max(values) if values else 0.0
                    else:
                        raise ValueError(mode)
    return out


# ------------------------------------------------------------------------------------------------ RoI Pool


def round_half_away(v: float) -> int:
    """Round to the nearest integer, halves away from zero (C's ``round``)."""
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def roi_pool_ref(input, rois, output_size, spatial_scale: float = 1.0, bin_dtype=np.float64) -> np.ndarray:
    """Quantized RoI max pooling -> (K, C, PH, PW) float64.

    Corners ``round_half_away(coord * scale)``; ``roi = max(end - start + 1, 1)``; ``bin = roi / P`` computed in
    ``bin_dtype`` (torchvision computes it in the input's dtype: float32 and float64 disagree for some
    sizes, e.g. 29 / 7 * 7); bin ``p`` covers ``[floor(p * bin), ceil((p + 1) * bin))`` + start, each end clipped
    to ``[0, size]``; an empty bin is 0, else the max over its cells.
    """
    x = np.asarray(input, dtype=np.float64)
    r = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    n, channels, height, width = x.shape
    ph_n, pw_n = _pair(output_size)
    out = np.zeros((r.shape[0], channels, ph_n, pw_n), dtype=np.float64)
    for k in range(r.shape[0]):
        b = _batch_index(r[k, 0], n)
        if b is None or not all(math.isfinite(float(v)) for v in r[k, 1:]):
            continue
        x1, y1, x2, y2 = (round_half_away(float(v) * spatial_scale) for v in r[k, 1:])
        roi_w = max(x2 - x1 + 1, 1)
        roi_h = max(y2 - y1 + 1, 1)
        bin_h = bin_dtype(roi_h) / bin_dtype(ph_n)
        bin_w = bin_dtype(roi_w) / bin_dtype(pw_n)
        for ph in range(ph_n):
            h0 = min(max(math.floor(bin_dtype(ph) * bin_h) + y1, 0), height)
            h1 = min(max(math.ceil(bin_dtype(ph + 1) * bin_h) + y1, 0), height)
            for pw in range(pw_n):
                w0 = min(max(math.floor(bin_dtype(pw) * bin_w) + x1, 0), width)
                w1 = min(max(math.ceil(bin_dtype(pw + 1) * bin_w) + x1, 0), width)
                if h1 <= h0 or w1 <= w0:
                    continue  # empty bin: 0
                for c in range(channels):
                    best = -math.inf
                    for yy in range(h0, h1):
                        for xx in range(w0, w1):
                            best = max(best, float(x[b, c, yy, xx]))
                    out[k, c, ph, pw] = best
    return out


# ----------------------------------------------------------------------------------------------------- NMS


def iou_ref(a, b) -> float:
    """IoU of two XYXY boxes: inter / (area_a + area_b - inter), areas without +1, IEEE float64 division."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    area_a = (ax2 - ax1) * (ay2 - ay1)
    area_b = (bx2 - bx1) * (by2 - by1)
    iw = max(min(ax2, bx2) - max(ax1, bx1), 0.0)
    ih = max(min(ay2, by2) - max(ay1, by1), 0.0)
    inter = iw * ih
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.float64(inter) / np.float64(area_a + area_b - inter))  # 0/0 -> nan, never suppresses


def nms_ref(boxes, scores, iou_threshold: float) -> np.ndarray:
    """Greedy NMS: visit boxes by decreasing score (stable), keep one unless its IoU with a kept box is > thr."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores = [float(s) for s in np.asarray(scores, dtype=np.float64).reshape(-1)]
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # Python's sort is stable
    keep: list[int] = []
    for i in order:
        if not any(iou_ref(boxes[i], boxes[j]) > iou_threshold for j in keep):
            keep.append(i)
    return np.asarray(keep, dtype=np.int64)


def batched_nms_ref(boxes, scores, idxs, iou_threshold: float) -> np.ndarray:
    """NMS run separately inside each category; the union, by decreasing score (stable)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores_l = [float(s) for s in np.asarray(scores, dtype=np.float64).reshape(-1)]
    idxs_l = [int(v) for v in np.asarray(idxs).reshape(-1)]
    kept: list[int] = []
    for category in sorted(set(idxs_l)):
        members = [i for i in range(len(idxs_l)) if idxs_l[i] == category]
        local = nms_ref(boxes[members], [scores_l[i] for i in members], iou_threshold)
        kept.extend(members[j] for j in local)
    kept.sort(key=lambda i: (-scores_l[i], i))
    return np.asarray(kept, dtype=np.int64)


# ------------------------------------------------------------------------------------------ FPN levels


def level_ref(box, k_min: int, k_max: int, canonical_scale: float = 224, canonical_level: float = 4,
              eps: float = 1e-6) -> int:
    """0-based FPN level of one XYXY box: floor(lvl0 + log2(sqrt(area) / s0) + eps) clamped to [k_min, k_max]."""
    x1, y1, x2, y2 = (float(v) for v in box)
    area = (x2 - x1) * (y2 - y1)
    if area < 0 or math.isnan(area):
        raise ValueError("level of a box with negative area is undefined")
    s = math.sqrt(area)
    if s == 0.0:
        level = k_min  # log2(0) = -inf, clamped up to k_min
    else:
        level = math.floor(canonical_level + math.log2(s / canonical_scale) + eps)
    return min(max(level, k_min), k_max) - k_min


def infer_scale_ref(feature_h: int, image_h: int) -> float:
    """Nearest power of two to feature_h / image_h."""
    return 2.0 ** round(math.log2(feature_h / image_h))


def _exact_log2(scale: float) -> int:
    v = -math.log2(scale)
    if v != round(v):
        raise ValueError(f"reference expects power-of-two scales, got {scale}")
    return int(round(v))


def multilevel_roi_align_ref(features, rois, output_size, sampling_ratio: int = 2, scales=None, image_size=None,
                             canonical_scale: float = 224, canonical_level: float = 4, aligned: bool = False,
                             mode: str = "avg") -> np.ndarray:
    """Each RoI is pooled with :func:`roi_align_ref` on the map of its FPN level, with that map's scale."""
    feats = [np.asarray(f, dtype=np.float64) for f in features]
    r = np.asarray(rois, dtype=np.float64).reshape(-1, 5)
    if scales is None:
        scales = [infer_scale_ref(f.shape[2], image_size[0]) for f in feats]
    k_min = _exact_log2(scales[0])
    k_max = _exact_log2(scales[-1])
    ph_n, pw_n = _pair(output_size)
    out = np.zeros((r.shape[0], feats[0].shape[1], ph_n, pw_n), dtype=np.float64)
    for k in range(r.shape[0]):
        level = level_ref(r[k, 1:], k_min, k_max, canonical_scale, canonical_level)
        out[k] = roi_align_ref(feats[level], r[k : k + 1], (ph_n, pw_n), scales[level], sampling_ratio,
                               aligned, mode)[0]
    return out
