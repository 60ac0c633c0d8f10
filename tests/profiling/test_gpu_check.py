"""benchmarks/gpu_check.py is the one script run when a GPU is lent, with minutes of device time for it: its own
code must not be what fails there. ``--cpu-dry-run`` runs every step on the CPU at toy sizes; this runs it as the
GPU machine would (the repository on PYTHONPATH, no install) with the packages that machine's image lacks
(pycocotools, onnxruntime-extensions) made unimportable, and checks what it wrote."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

BLOCKER = """
import sys
for name in ("pycocotools", "onnxruntime_extensions", "tensorrt"):
    sys.modules[name] = None  # import fails as if not installed
"""


def test_gpu_check_dry_run_runs_every_step(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(BLOCKER)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(site), str(ROOT)]))
    proc = subprocess.run([sys.executable, str(SCRIPT), "--cpu-dry-run", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".json") == [
        "environment.json", "latency.json", "roi_align.json", "summary.json", "tests.json"]

    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"].startswith("cpu dry run")
    env_json = json.loads((out / "environment.json").read_text())
    assert env_json["device"] == "cpu" and env_json["maskrt_cuda_kernels"]["registered"] is False

    # The needs_cuda tests were collected and ran (skipped here, each with its reason), not missing files.
    tests = json.loads((out / "tests.json").read_text())
    assert tests["returncode"] == 0, tests
    assert "skipped" in tests["summary"] and "error" not in tests["summary"], tests["summary"]

    # RoI Align: the custom op (its CPU implementation here) and maskrt's PyTorch op against the fp32 reference.
    rows = {(r["method"], r["dtype"]): r for r in json.loads((out / "roi_align.json").read_text())}
    for dtype, tolerance in (("fp32", 0.0), ("fp16", 5e-3)):
        for method in ("maskrt_cuda_kernel", "maskrt_pytorch_op"):
            row = rows[(method, dtype)]
            assert row["status"] == "ok", row
            assert row["max_abs_diff_vs_fp32_pytorch_op"] <= tolerance, row
            assert row["events_back_to_back"]["median_ms"] > 0
            assert row["cuda_graph"].startswith("not measured")
    assert rows[("maskrt_cuda_kernel", "fp32")]["note"].endswith("CPU implementation (dry run)")

    # Latency: every variant that can run on a CPU ran and detected something in each image of the batch.
    latency = json.loads((out / "latency.json").read_text())
    assert {(r["batch"], r["precision"], r["cuda_graph"]) for r in latency} == {
        (b, p, g) for b in (1, 2) for p, g in (("fp32", False), ("fp16", False), ("fp16", True))}
    for row in latency:
        if row["cuda_graph"]:
            assert row["status"].startswith("not run"), row
            continue
        assert row["status"] == "ok", row
        assert len(row["detections"]) == row["batch"] and min(row["detections"]) > 0, row
        assert row["wall_ms_median"] > 0 and row["event_span_ms_median"] is None
        assert row["host_syncs_per_forward"] is None and row["gpu_busy_ms"] is None
        assert row["tf32_convolutions"] is None
    assert [r["status"] for r in summary["latency"]] == [r["status"] for r in latency]


def test_gpu_check_without_cuda_and_without_dry_run_says_so(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--out", str(tmp_path / "out")], cwd=tmp_path,
                          capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(ROOT)), timeout=300)
    assert proc.returncode == 0
    assert "no CUDA device" in proc.stdout
    assert not (tmp_path / "out").exists()
