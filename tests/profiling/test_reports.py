"""Reports: the JSON schema round-trips; Markdown and HTML views; the HTML page loads in headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import pytest

from maskrt.core.errors import MaskrtError
from maskrt.profiling import render as reports
from maskrt.profiling.render import tables
from maskrt.profiling.report import (
    FIGURES,
    SCHEMA,
    SCHEMA_VERSION,
    STAGES,
    Figure,
    LatencyReport,
    Run,
    read_json,
    warnings_for,
    write_json,
)


def _report(kind: str = "profile") -> LatencyReport:
    runs = []
    for i, batch in enumerate((1, 2, 4)):
        run = Run(label="m.onnx [onnxruntime]", backend="onnxruntime", device="cpu", precision="fp32", batch=batch,
                  model={"name": "m|x.onnx", "path": "/tmp/m.onnx", "size_bytes": 12345678, "sha256": "ab" * 32},
                  providers=["CPUExecutionProvider"])
        base = 10.0 * batch
        run.figures["model"] = Figure(FIGURES["model"], [base + 0.1 * k for k in range(20)] + [base * 1.5], batch)
        for s, share in zip((*STAGES,), (0.1, 0.01, 1.0, 0.01, 0.3)):
            run.figures[s] = Figure(FIGURES[s], [base * share] * 5, batch)
        run.figures["end_to_end"] = Figure(FIGURES["end_to_end"], [base * 1.42] * 5, batch)
        run.memory = {"peak_rss_mb": 900.0 + i}
        run.warnings = warnings_for(run)
        runs.append(run)
    failed = Run(label="other.onnx", backend="onnxruntime", device="cpu", precision="fp16", batch=1, status="failed",
                 error="model not found: other.onnx", model={"name": "other.onnx"})
    runs.append(failed)
    return LatencyReport(kind=kind, runs=runs, environment={"cpu": "Test CPU", "cpu_cores": 2, "gpus": [],
                                                            "torch": "2.13.0", "onnxruntime": "1.31.1"},
                         settings={"warmup_iterations": 1, "iterations": 21, "distinct_batches": 4,
                                   "images": "generated", "input_size": [64, 96]}, created="2026-01-01T00:00:00+00:00")


def test_json_round_trip_keeps_every_raw_time(tmp_path):
    report = _report()
    path = write_json(report, str(tmp_path / "r.json"))
    data = json.loads(open(path).read())
    assert data["schema"] == SCHEMA and data["schema_version"] == SCHEMA_VERSION
    assert data["definitions"]["figures"]["model"] == FIGURES["model"]
    assert data["runs"][1]["figures"]["model"]["times_ms"] == report.runs[1].figures["model"].times_ms
    assert data["runs"][0]["figures"]["model"]["stats"]["count"] == 21
    back = read_json(path)
    assert back.to_dict() == report.to_dict()
    assert os.listdir(tmp_path) == ["r.json"]  # written through a temporary name


def test_json_schema_checks(tmp_path):
    d = _report().to_dict()
    with pytest.raises(MaskrtError, match="not a maskrt latency report"):
        LatencyReport.from_dict({**d, "schema": "other"})
    with pytest.raises(MaskrtError, match="newer than this maskrt reads"):
        LatencyReport.from_dict({**d, "schema_version": SCHEMA_VERSION + 1})
    newer = dict(d, runs=[{**d["runs"][0], "added_later": 1}])
    assert LatencyReport.from_dict(newer).runs[0].label == d["runs"][0]["label"]
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(MaskrtError, match="cannot read latency report"):
        read_json(str(bad))


def test_markdown_tables():
    md = reports.to_markdown(_report())
    lines = md.splitlines()
    header = next(line for line in lines if line.startswith("| model |"))
    assert "median ms" in header and "p99 ms" in header and "throughput img/s" in header
    rows = [line for line in lines if line.startswith("| m\\|x.onnx")]
    assert len(rows) == 3 + 3  # summary rows and stage rows, pipe escaped
    assert "| failed: model not found: other.onnx |" in md
    assert "### Predictor stages" in md and "### Environment" in md and "Test CPU (2 usable cores)" in md


def test_bench_table_ratio_and_ap_columns():
    report = _report("bench")
    header, rows = tables.summary_rows(report)
    assert header[-3:] == ["ratio", "bbox AP", "segm AP"]
    # medians are base + 1.0 ms (11, 21, 41): ratios 21/11 and 41/11
    assert [r[-3] for r in rows] == ["1.000", "1.909", "3.727", "—"]
    assert rows[0][-2:] == ["—", "—"]
    report.runs[0].accuracy = {"bbox_ap": 0.75, "segm_ap": 0.6124}
    assert tables.summary_rows(report)[1][0][-2:] == ["75.0", "61.2"]
    assert "ratio: median latency divided by that of m.onnx [onnxruntime]" in reports.to_markdown(report)


def test_terminal_report_prints(capsys):
    from rich.console import Console

    console = Console(width=160, record=True)
    reports.print_report(_report(), console)
    text = console.export_text()
    assert "maskrt profile: model latency (ms)" in text and "Predictor stages" in text
    assert "failed: model not found" in text
    assert "coefficient of variation" in text  # the outlier iteration makes each run noisy
    assert "m.onnx [onnxruntime] (batch 1)" in text  # labels are text, not rich markup


def test_html_is_self_contained():
    page = reports.to_html(_report())
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page)
    assert "@import" not in page
    assert page.count("<svg") == 3  # CDF, stages, throughput vs batch
    for heading in ("Model latency", "Latency distribution", "Predictor stages", "Throughput vs batch size",
                    "Environment", "Definitions"):
        assert f"<h2>{heading}</h2>" in page


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _load_in_chromium(path: str, tmp_path) -> tuple[str, list[str]]:
    """DOM after load, and the console lines Chromium logged (messages, errors, uncaught exceptions)."""
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0", "--dump-dom",
           f"file://{path}"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    console = [line for line in r.stderr.splitlines() if ":CONSOLE" in line]
    return r.stdout, console


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium); "
                    ".ci/run installs it")
def test_html_loads_in_headless_chromium_without_console_errors(tmp_path):
    path = reports.write_html(_report(), str(tmp_path / "report.html"))
    dom, console = _load_in_chromium(path, tmp_path)
    assert console == []
    for heading in ("Model latency", "Latency distribution", "Predictor stages", "Throughput vs batch size",
                    "Environment"):
        assert f"<h2>{heading}</h2>" in dom
    assert "<svg" in dom and "Test CPU" in dom
    # The check can fail: a page with a script error is caught.
    broken = tmp_path / "broken.html"
    broken.write_text(open(path).read().replace("<script>", "<script>undefinedFunction();", 1))
    _, console = _load_in_chromium(str(broken), tmp_path)
    assert any("undefinedFunction" in line for line in console)
