"""maskrt.ops.roi_align (avg) held to ONNX Runtime's RoiAlign, an independent implementation.

aligned=True <-> coordinate_transformation_mode "half_pixel", aligned=False <-> "output_half_pixel"; ONNX's
sampling_ratio 0 is the adaptive grid (maskrt: any value <= 0). Both run in float32 with the same formulas;
tolerance ``atol=1e-5, rtol=1e-5``. RoIs stay inside or near the map (ORT has no invalid-batch rule).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskrt.ops import roi_align

from .reference import roi_align_ref

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

TOL = dict(atol=1e-5, rtol=1e-5)
_SESSIONS: dict = {}


def _session(out_h, out_w, scale, sampling, aligned, mode="avg"):
    key = (out_h, out_w, scale, sampling, aligned, mode)
    if key not in _SESSIONS:
        node = helper.make_node(
            "RoiAlign", ["X", "rois", "batch_indices"], ["Y"], mode=mode, output_height=out_h, output_width=out_w,
            sampling_ratio=sampling, spatial_scale=scale,
            coordinate_transformation_mode="half_pixel" if aligned else "output_half_pixel",
        )
        graph = helper.make_graph(
            [node], "roialign",
            [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", "C", "H", "W"]),
             helper.make_tensor_value_info("rois", TensorProto.FLOAT, ["K", 4]),
             helper.make_tensor_value_info("batch_indices", TensorProto.INT64, ["K"])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["K", "C", out_h, out_w])],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 16)])
        model.ir_version = 8  # onnx 1.23 writes IR 14; onnxruntime 1.31 reads at most 13
        onnx.checker.check_model(model)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        _SESSIONS[key] = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return _SESSIONS[key]


def _run_ort(x: torch.Tensor, rois: torch.Tensor, out, scale, sampling, aligned, mode="avg") -> np.ndarray:
    sess = _session(out[0], out[1], scale, max(sampling, 0), aligned, mode)
    return sess.run(None, {
        "X": x.numpy(),
        "rois": rois[:, 1:].contiguous().numpy(),
        "batch_indices": rois[:, 0].to(torch.int64).numpy(),
    })[0]


def _rois_near(g: torch.Generator, n: int, k: int, h: int, w: int, scale: float) -> torch.Tensor:
    """RoIs in image pixels whose corners lie within a pixel or so of an h x w map, some tiny or degenerate."""
    xy = torch.rand(k, 2, generator=g) * torch.tensor([w + 1.0, h + 1.0]) - 1.0
    wh = torch.rand(k, 2, generator=g) * torch.tensor([float(w), float(h)])
    wh[: k // 8] = 0.0  # zero size
    wh[k // 8 : k // 4] *= 0.05  # tiny
    b = torch.randint(0, n, (k, 1), generator=g).float()
    return torch.cat([b, xy / scale, (xy + wh) / scale], dim=1)


@pytest.mark.parametrize("aligned", [False, True])
@pytest.mark.parametrize("sampling", [0, -1, 1, 2, 3])
@pytest.mark.parametrize("seed", range(3))
def test_matches_onnxruntime(aligned, sampling, seed):
    g = torch.Generator().manual_seed(1000 * seed + 10 * sampling + aligned)
    n, c = 2, 8
    h, w = [(20, 30), (13, 9), (1, 7)][seed]
    scale = [0.25, 0.5, 1.0][seed]
    out = [(7, 7), (3, 5), (2, 2)][seed]
    x = torch.randn(n, c, h, w, generator=g)
    rois = _rois_near(g, n, 64, h, w, scale)
    got = roi_align(x, rois, out, scale, sampling, aligned, "avg").numpy()
    np.testing.assert_allclose(got, _run_ort(x, rois, out, scale, sampling, aligned), **TOL)


def test_matches_onnxruntime_large():
    """A larger case: 64 channels, 14x14 output, 120 RoIs on a 50x68 map, adaptive and fixed sampling."""
    g = torch.Generator().manual_seed(7)
    x = torch.randn(2, 64, 50, 68, generator=g)
    rois = _rois_near(g, 2, 120, 50, 68, 0.25)
    for sampling, aligned in ((0, True), (2, False)):
        got = roi_align(x, rois, 14, 0.25, sampling, aligned).numpy()
        np.testing.assert_allclose(got, _run_ort(x, rois, (14, 14), 0.25, sampling, aligned), **TOL)


def test_onnxruntime_agrees_with_reference():
    """Sanity check of the harness itself: ORT equals the loop reference on a small case."""
    g = torch.Generator().manual_seed(11)
    x = torch.randn(1, 2, 6, 7, generator=g)
    rois = _rois_near(g, 1, 10, 6, 7, 1.0)
    for aligned in (False, True):
        want = roi_align_ref(x.double().numpy(), rois.double().numpy(), (3, 2), 1.0, 0, aligned)
        np.testing.assert_allclose(_run_ort(x, rois, (3, 2), 1.0, 0, aligned), want, **TOL)


def test_documents_onnxruntime_max_mode_defect():
    """NOT a property of maskrt: documents a known ONNX Runtime defect. ORT's RoiAlign "max" takes the maximum
    of the four *weighted corner terms* (w_i * v_i) instead of the maximum of the interpolated sample values,
    so it disagrees with maskrt's max mode (and with the loop reference) wherever interpolation mixes
    neighbours. If this starts failing, ORT fixed its max mode and the comparison can become a real test."""
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    rois = torch.tensor([[0, 0.0, 0.0, 2.0, 2.0]])
    ours = roi_align(x, rois, 1, 1.0, 2, False, "max")
    ref = roi_align_ref(x.double().numpy(), rois.double().numpy(), 1, 1.0, 2, False, "max")
    np.testing.assert_allclose(ours.numpy(), ref, **TOL)
    assert ours.item() == pytest.approx(7.5)  # the sample at (1.5, 1.5): 0.25 * (5 + 6 + 9 + 10)
    theirs = _run_ort(x, rois, (1, 1), 1.0, 2, False, "max")
    assert not np.allclose(theirs, ref, **TOL)
    assert theirs.item() == pytest.approx(2.5)  # max over samples of max_i(w_i * v_i) = 0.25 * 10
