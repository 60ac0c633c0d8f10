"""Box decoding and clipping against a coordinate-by-coordinate reference written here (the R-CNN formulas as
torchvision's BoxCoder and clip_boxes_to_image state them), bit for bit: maskrt computes them on coordinate
pairs in fewer operators, and the eager model's parity with torchvision rests on the same arithmetic."""

from __future__ import annotations

import math

import pytest
import torch

from maskrt.model.box_coder import BoxCoder
from maskrt.model.rpn import clip_to_sizes, side_at_least

CLIP = math.log(1000.0 / 16)


def reference_decode(deltas, boxes, weights):
    boxes = boxes.to(deltas.dtype)
    widths = boxes[:, 2] - boxes[:, 0]
    heights = boxes[:, 3] - boxes[:, 1]
    ctr_x = boxes[:, 0] + 0.5 * widths
    ctr_y = boxes[:, 1] + 0.5 * heights
    wx, wy, ww, wh = weights
    dx = deltas[:, 0::4] / wx
    dy = deltas[:, 1::4] / wy
    dw = torch.clamp(deltas[:, 2::4] / ww, max=CLIP)
    dh = torch.clamp(deltas[:, 3::4] / wh, max=CLIP)
    pred_ctr_x = dx * widths[:, None] + ctr_x[:, None]
    pred_ctr_y = dy * heights[:, None] + ctr_y[:, None]
    pred_w = torch.exp(dw) * widths[:, None]
    pred_h = torch.exp(dh) * heights[:, None]
    half_w = torch.tensor(0.5, dtype=pred_ctr_x.dtype) * pred_w
    half_h = torch.tensor(0.5, dtype=pred_ctr_y.dtype) * pred_h
    return torch.stack((pred_ctr_x - half_w, pred_ctr_y - half_h, pred_ctr_x + half_w, pred_ctr_y + half_h), dim=2)


def same(a, b) -> bool:
    """Bitwise equal values, NaNs in the same places (a zero's sign aside)."""
    return a.shape == b.shape and torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(0.25), b.nan_to_num(0.25))


def boxes_and_deltas(dtype, n=64, classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 1200
    wh = torch.rand(n, 2, generator=g) * 400
    wh[0] = 0.0  # a degenerate reference box
    boxes = torch.cat([xy, xy + wh], dim=1)
    deltas = torch.randn(n, 4 * classes, generator=g) * 2
    deltas[1, 2] = 50.0  # clamped
    deltas[2, 3] = float("nan")
    deltas[3, 0] = float("inf")
    return deltas.to(dtype), boxes


@pytest.mark.parametrize("weights", [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0), (10.0, 20.0, 5.0, 7.5)])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_decode_equals_the_coordinate_by_coordinate_formula(weights, dtype):
    deltas, boxes = boxes_and_deltas(dtype)
    out = BoxCoder(weights).decode(deltas, boxes)
    assert out.dtype == dtype
    assert same(out, reference_decode(deltas, boxes, weights))
    # Leading dimensions (batch, proposals) decode as the flat rows they hold.
    batched = BoxCoder(weights).decode(deltas.reshape(4, 16, -1), boxes.reshape(4, 16, 4))
    assert same(batched.reshape(out.shape), out)


def test_decode_inverts_encode():
    deltas, boxes = boxes_and_deltas(torch.float64, classes=1)
    boxes = boxes[4:]
    coder = BoxCoder((10.0, 10.0, 5.0, 5.0))
    targets = coder.decode(deltas[4:] * 0.1, boxes)[:, 0]
    assert torch.allclose(coder.decode(coder.encode(targets, boxes), boxes)[:, 0], targets, atol=1e-9)


def test_clip_and_side_filter_per_image():
    g = torch.Generator().manual_seed(1)
    boxes = (torch.rand(3, 40, 7, 4, generator=g) - 0.3) * 1500
    boxes[0, 0, 0, 0] = float("nan")
    sizes = torch.tensor([[800, 1344], [600, 900], [33, 1]])
    out = clip_to_sizes(boxes, sizes)
    for i, (h, w) in enumerate(sizes.tolist()):
        bound = torch.tensor([w, h, w, h], dtype=boxes.dtype)
        expected = torch.minimum(torch.maximum(boxes[i], torch.zeros(())), bound)
        assert same(out[i], expected)
    # one row of sizes serves every image
    assert same(clip_to_sizes(boxes, sizes[:1]), torch.stack([clip_to_sizes(b[None], sizes[:1])[0] for b in boxes]))
    ok = side_at_least(out, 1.0)
    manual = ((out[..., 2] - out[..., 0]) >= 1.0) & ((out[..., 3] - out[..., 1]) >= 1.0)
    assert torch.equal(ok, manual) and ok.any() and not ok.all()
