"""Build and run real TensorRT engines; compare with ONNX Runtime. Runs wherever TensorRT and a GPU are present."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from maskrt.backends.trt.build import build_engine
from maskrt.backends.trt.plan import BuildOptions
from maskrt.backends.trt.sidecar import read_sidecar, sidecar_path
from maskrt.core.errors import MaskrtError
from tests.backends.engine_fixtures import tiny_onnx

pytestmark = [pytest.mark.needs_tensorrt, pytest.mark.needs_cuda]


def _ort(onnx_path, images):
    import onnxruntime

    session = onnxruntime.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


def test_tiny_engine_matches_onnxruntime(tmp_path):
    from maskrt.backends.trt.runner import TrtRunner

    onnx = tiny_onnx(tmp_path / "m.onnx")
    cache = tmp_path / "timing.cache"
    result = build_engine(onnx, str(tmp_path / "m.engine"), BuildOptions(max_batch=4, timing_cache=str(cache),
                                                                         workspace="256M"))
    assert os.path.getsize(result.path) == result.size_bytes and cache.is_file()
    side = read_sidecar(result.path)
    assert side["inputs"][0]["min"][0] == 1 and side["inputs"][0]["max"][0] == 4
    assert side["gpu"]["name"] == torch.cuda.get_device_name(0)
    images = np.random.default_rng(0).integers(0, 255, (3, 3, 32, 48), dtype=np.uint8)
    with TrtRunner(result.path) as r:
        out = r.infer({"images": torch.from_numpy(images)})["out"].numpy()
    np.testing.assert_allclose(out, _ort(onnx, images), rtol=1e-6, atol=1e-6)
    # a second build reads the timing cache
    build_engine(onnx, str(tmp_path / "m2.engine"), BuildOptions(max_batch=4, timing_cache=str(cache)))


def test_fp16_engine_and_cuda_graph(tmp_path):
    from maskrt.backends.trt.runner import TrtRunner

    onnx = tiny_onnx(tmp_path / "h.onnx", batch=2, precision="fp16")
    result = build_engine(onnx, str(tmp_path / "h.engine"))
    assert result.plan.precision_route == "onnx-types"
    images = np.random.default_rng(1).integers(0, 255, (2, 3, 32, 48), dtype=np.uint8)
    with TrtRunner(result.path, cuda_graph=True) as r:
        first = r.infer({"images": torch.from_numpy(images)})["out"].numpy()
        second = r.infer({"images": torch.from_numpy(images[::-1].copy())})["out"].numpy()
        rows = r.profile_layers(r.upload({"images": torch.from_numpy(images)}), iterations=3)
    np.testing.assert_allclose(first.astype(np.float32), _ort(onnx, images).astype(np.float32), rtol=1e-3)
    np.testing.assert_allclose(second.astype(np.float32), _ort(onnx, images[::-1].copy()).astype(np.float32), rtol=1e-3)
    assert rows and abs(sum(r["percent"] for r in rows) - 100.0) < 1e-6 and rows[0]["runs"] == 3


def test_engine_refused_when_sidecar_names_another_version(tmp_path):
    from maskrt.backends.trt.runner import TrtRunner

    result = build_engine(tiny_onnx(tmp_path / "m.onnx", batch=1), str(tmp_path / "m.engine"))
    side = read_sidecar(result.path)
    side["tensorrt"]["version"] = "9.0.0"
    with open(sidecar_path(result.path), "w") as f:
        json.dump(side, f)
    with pytest.raises(MaskrtError, match="built with TensorRT 9.0.0"):
        TrtRunner(result.path).activate()


def test_corrupt_engine_without_sidecar(tmp_path):
    from maskrt.backends.trt.runner import TrtRunner

    path = tmp_path / "junk.engine"
    path.write_bytes(os.urandom(4096))
    with pytest.raises(MaskrtError, match="cannot deserialise"):
        TrtRunner(path, require_metadata=False).activate()


@pytest.mark.slow
def test_mask_rcnn_engine_matches_onnxruntime(tmp_path):
    from maskrt.backends import OrtRunner
    from maskrt.backends.trt.runner import TrtRunner
    from maskrt.data.images import synthetic_image
    from maskrt.export import to_onnx
    from maskrt.inference import Predictor
    from maskrt.model import build

    torch.manual_seed(0)
    model = build("maskrcnn_resnet18_fpn", num_classes=3, min_size=128, max_size=192).eval()
    onnx = to_onnx(model, tmp_path / "m.onnx", input_size=(128, 192)).path
    engine = build_engine(onnx, str(tmp_path / "m.engine")).path
    image = synthetic_image(128, 192, 3)
    with Predictor(OrtRunner(onnx), score_threshold=0.0) as p:
        ref = p.predict([image])[0]
    with Predictor(TrtRunner(engine), score_threshold=0.0) as p:
        got = p.predict([image])[0]
    assert len(got) == len(ref)
    torch.testing.assert_close(got.boxes, ref.boxes, atol=0.5, rtol=0)
