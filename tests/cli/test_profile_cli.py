"""maskrt profile and maskrt bench from the command line."""

from __future__ import annotations

import json
import os

import pytest
import torch

from tests.cli.test_cli import run
from tests.profiling.perf_helpers import tiny_files


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("perfcli")
    ckpt, dyn = tiny_files(folder, dynamic_batch=True)
    _, fixed = tiny_files(folder, dynamic_batch=False)
    return folder, ckpt, dyn, fixed


def test_profile_writes_all_reports(files, tmp_path):
    _, _, dyn, _ = files
    out = {k: tmp_path / f"r.{k}" for k in ("json", "md", "html")}
    r = run("profile", str(dyn), "--batch", "1,2", "--warmup", "1", "--iterations", "2", "--stages",
            "--json", str(out["json"]), "--markdown", str(out["md"]), "--html", str(out["html"]))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "maskrt profile: model latency (ms)" in r.stdout and "Predictor stages" in r.stdout
    data = json.loads(out["json"].read_text())
    assert [run_["batch"] for run_ in data["runs"]] == [1, 2]
    assert all(len(run_["figures"]["model"]["times_ms"]) == 2 for run_ in data["runs"])
    assert out["md"].read_text().startswith("## maskrt profile")
    assert "<h2>Throughput vs batch size</h2>" in out["html"].read_text()
    assert sorted(os.listdir(tmp_path)) == ["r.html", "r.json", "r.md"]


def test_bench_side_by_side_with_a_failing_row(files, tmp_path):
    folder, ckpt, dyn, fixed = files
    r = run("bench", str(dyn), str(fixed), str(ckpt), str(folder / "missing.onnx"), "--arch", "maskrcnn_resnet18_fpn",
            "--num-classes", "3", "--input-size", "64x96", "--warmup", "1", "--iterations", "2",
            "--json", str(tmp_path / "b.json"))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((tmp_path / "b.json").read_text())
    assert [x["status"] for x in data["runs"]] == ["ok", "ok", "ok", "failed"]
    assert [x["backend"] for x in data["runs"]] == ["onnxruntime", "onnxruntime", "torch", "onnxruntime"]
    assert "model not found" in data["runs"][3]["error"] and "failed: model not found" in r.stdout
    assert "ratio" in r.stdout


@pytest.mark.parametrize("args,fragment", [
    (["profile", "{dyn}", "--iterations", "0"], "--iterations must be >= 1"),
    (["profile", "{fixed}", "--batch", "1,2", "--iterations", "1"], "takes batch 1 only"),
    (["profile", "{dyn}", "--batch", "x"], "--batch must be positive integers"),
    (["profile", "{dyn}", "--fp16"], "export with `maskrt export --precision fp16`"),
    (["profile", "{dyn}", "--cuda-graph"], "torch backend only"),
    (["profile"], "give MODEL"),
    (["profile", "{dyn}", "--json", "{missing}/r.json", "--iterations", "1"], "does not exist"),
    (["bench", "{dyn}", "--backends", "tvm"], "unknown backend(s) tvm"),
    (["bench", "{dyn}", "--backends", "tensorrt"], "none of --backends tensorrt applies"),
    (["bench", "{dyn}", "--backends", "torch"], "none of --backends torch applies"),
])
def test_bad_input_is_one_line(files, tmp_path, args, fragment):
    folder, _, dyn, fixed = files
    args = [a.format(dyn=dyn, fixed=fixed, missing=tmp_path / "nope") for a in args]
    r = run(*args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr and fragment in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda(files):
    _, ckpt, dyn, _ = files
    r = run("profile", str(ckpt), "--arch", "maskrcnn_resnet18_fpn", "--num-classes", "3", "--device", "cuda")
    assert r.returncode == 2 and "no CUDA device" in r.stderr and "Traceback" not in r.stderr
    r = run("profile", str(dyn), "--device", "cuda")
    assert r.returncode == 2 and "CUDA provider" in r.stderr and "Traceback" not in r.stderr
