"""TorchRunner on a GPU against the CPU eager forward (needs_cuda: skipped without one).

Tolerances, stated once: fp32 on CUDA runs convolutions in TF32 unless disabled, so these tests turn TF32 off and
then expect the same detections as the CPU with boxes within 0.05 px, scores within 1e-3 and masks within 1e-2
(cuDNN's convolution algorithms and the folded BatchNorm change the rounding, not the results). fp16: detections
matched by IoU >= 0.9 for at least 90 % of the CPU's, scores within 2e-2 for the matched ones. The CUDA graph
runner must equal the plain CUDA runner of the same precision exactly (same kernels, replayed).
"""

from __future__ import annotations

import pytest
import torch

from maskrt.backends import TorchRunner
from maskrt.model import build, load_checkpoint
from maskrt.model.presets import get_preset
from maskrt.ops.boxes import box_iou
from tests.model.helpers import uint8_images

pytestmark = pytest.mark.needs_cuda
CANVAS = (384, 384)


@pytest.fixture(scope="module")
def model():
    m = build("shapes").eval()
    load_checkpoint(get_preset("shapes").weights_path(), m)
    return m


@pytest.fixture(scope="module")
def feeds():
    from maskrt.data.shapes import make_scene

    images = uint8_images(2, *CANVAS, seed=5)
    for i in range(2):
        scene = torch.from_numpy(make_scene(1000, i).image.copy()).permute(2, 0, 1)[:, :CANVAS[0], :CANVAS[1]]
        images[i, :, : scene.shape[1], : scene.shape[2]] = scene
    return {"images": images, "image_sizes": torch.tensor([[384, 384], [320, 352]], dtype=torch.int32)}


@pytest.fixture(scope="module")
def cpu_out(model, feeds):
    with TorchRunner(model, CANVAS, 2) as r:
        return r.infer(feeds)


@pytest.fixture(autouse=True)
def no_tf32():
    """Full fp32 arithmetic, and cuDNN's deterministic algorithms: the runs below are compared with torch.equal,
    and cuDNN may otherwise pick an algorithm that accumulates with atomics (the mask head's transposed
    convolution)."""
    cudnn = torch.backends.cudnn
    old = torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark
    torch.backends.cuda.matmul.allow_tf32 = cudnn.allow_tf32 = False
    cudnn.deterministic, cudnn.benchmark = True, False
    yield
    torch.backends.cuda.matmul.allow_tf32, cudnn.allow_tf32, cudnn.deterministic, cudnn.benchmark = old


def _run(model, feeds, **kw):
    with TorchRunner(model, CANVAS, 2, device="cuda", **kw) as r:
        first = r.infer(feeds)
        second = r.infer(feeds)  # a replay (graphs) or a warm run
    for a, b in zip(first.values(), second.values()):
        assert torch.equal(a, b)
    return first


def test_fp32_equals_cpu(model, feeds, cpu_out):
    got = _run(model, feeds)
    assert torch.equal(got["num_detections"], cpu_out["num_detections"]) and int(cpu_out["num_detections"][0]) > 0
    for i, n in enumerate(cpu_out["num_detections"].tolist()):
        assert torch.equal(got["labels"][i, :n], cpu_out["labels"][i, :n])
        torch.testing.assert_close(got["boxes"][i, :n], cpu_out["boxes"][i, :n], atol=0.05, rtol=0)
        torch.testing.assert_close(got["scores"][i, :n], cpu_out["scores"][i, :n], atol=1e-3, rtol=0)
        torch.testing.assert_close(got["masks"][i, :n], cpu_out["masks"][i, :n], atol=1e-2, rtol=0)


def test_fp16_close_to_cpu(model, feeds, cpu_out):
    got = _run(model, feeds, precision="fp16")
    for i, n in enumerate(cpu_out["num_detections"].tolist()):
        m = int(got["num_detections"][i])
        iou = box_iou(cpu_out["boxes"][i, :n], got["boxes"][i, :m])
        same = iou * (cpu_out["labels"][i, :n, None] == got["labels"][i, None, :m])
        best, where = same.max(dim=1) if m else (torch.zeros(n), torch.zeros(n, dtype=torch.long))
        matched = best >= 0.9
        assert matched.float().mean() >= 0.9
        torch.testing.assert_close(got["scores"][i, where[matched]], cpu_out["scores"][i, :n][matched], atol=2e-2,
                                   rtol=0)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_equals_plain_cuda(model, feeds, precision):
    plain = _run(model, feeds, precision=precision)
    graphed = _run(model, feeds, precision=precision, cuda_graph=True)
    for name in plain:
        assert torch.equal(plain[name], graphed[name]), name


def test_forward_has_no_host_sync_with_kernels(model, feeds):
    """With maskrt's CUDA kernels registered the forward never synchronises (sync debug mode errors on one)."""
    from maskrt.ops.cuda_kernels import register_cuda_kernels

    if not register_cuda_kernels():
        pytest.skip("CUDA kernels disabled")
    with TorchRunner(model, CANVAS, 2, device="cuda") as r:
        uploaded = r.upload(feeds)
        r.execute(uploaded)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            r.execute(uploaded)
        finally:
            torch.cuda.set_sync_debug_mode("default")
