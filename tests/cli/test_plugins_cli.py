"""maskrt plugins build/path, and a TensorRT-target export predicted through ONNX Runtime's bridge."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def run(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskrt", *args], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def test_plugins_build_host_twin_and_path(tmp_path):
    out = tmp_path / "lib"
    r = run("plugins", "build", "--no-cuda", "--build-dir", str(tmp_path / "build"), "--output-dir", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"output: {out}" in r.stdout and "libmaskrt_mlra_host.so: " + str(out) in r.stdout
    assert "TensorRT plugin: not built" in r.stdout
    p = run("plugins", "path", env={"MASKRT_PLUGIN_PATH": str(out)})
    assert p.returncode == 0 and f"search path: {out}" in p.stdout
    assert f"libmaskrt_mlra_host.so: {out / 'libmaskrt_mlra_host.so'}" in p.stdout


def test_tensorrt_target_predicts_like_the_portable_graph(tmp_path):
    pytest.importorskip("onnxruntime_extensions")
    from maskrt.data.images import synthetic_image

    image = tmp_path / "img.png"
    from PIL import Image

    Image.fromarray(synthetic_image(60, 90, 3).permute(1, 2, 0).numpy()).save(image)
    results = {}
    for target in ("portable", "tensorrt"):
        onnx_path = tmp_path / f"{target}.onnx"
        r = run("export", "--arch", "maskrcnn_resnet18_fpn", "--random-weights", "--num-classes", "3",
                "--input-size", "64x96", "--score-threshold", "0", "--max-detections", "20", "--target", target,
                "-o", str(onnx_path))
        assert r.returncode == 0 and f"{target} graph" in r.stdout, r.stdout + r.stderr
        out = tmp_path / target
        r = run("predict", str(onnx_path), str(image), "--score-threshold", "0", "--out", str(out))
        assert r.returncode == 0, r.stdout + r.stderr
        results[target] = json.loads((out / "predictions.json").read_text())
    portable, trt = results["portable"], results["tensorrt"]
    assert len(portable) == len(trt) == 20
    for a, b in zip(portable, trt, strict=True):
        assert a["category_id"] == b["category_id"] and a["segmentation"] == b["segmentation"]
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-4) and a["score"] == pytest.approx(b["score"], abs=1e-6)
