"""GPU-busy time beside the event span: the kernel-time sum over profiler events, the warning it gives, and where
reports show it. The profiler itself records CUDA kernels only on a GPU (benchmarks/gpu_check.py runs it there);
here its events are stand-ins with the attributes torch.profiler's FunctionEvent has."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from maskrt.profiling.measure import gpu_busy_ms, kernel_ms
from maskrt.profiling.render import tables, terminal
from maskrt.profiling.report import FIGURES, Figure, LatencyReport, Run, warnings_for


def _event(name, device_type, us):
    return SimpleNamespace(name=name, device_type=f"DeviceType.{device_type}", self_device_time_total=us)


def test_kernel_time_sums_device_kernels_only():
    events = [
        _event("void conv_kernel<float>(...)", "CUDA", 1500.0),
        _event("void roi_align_kernel(...)", "CUDA", 250.0),
        _event("Memcpy HtoD (Pageable -> Device)", "CUDA", 400.0),
        _event("Memset (Device)", "CUDA", 3.0),
        _event("aten::conv2d", "CPU", 9000.0),  # host-side operator: not GPU time
    ]
    assert kernel_ms(events) == 1.75
    assert kernel_ms([_event("aten::add", "CPU", 5.0)]) is None  # nothing recorded on the device
    assert kernel_ms([]) is None


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the path without CUDA")
def test_without_cuda_nothing_is_measured():
    calls = []
    assert gpu_busy_ms(lambda: calls.append(1)) is None
    assert calls == []  # the callable is not run for nothing


def _cuda_run(span_ms, enqueue_ms, busy_ms):
    run = Run(label="r50 [torch]", backend="torch", device="cuda:0", precision="fp16", batch=1)
    run.figures["model"] = Figure(FIGURES["model"], [span_ms] * 10, 1)
    run.figures["enqueue"] = Figure(FIGURES["enqueue"], [enqueue_ms] * 10, 1)
    if busy_ms is not None:
        run.gpu_busy = {"ms_per_execute": busy_ms, "executions": 5, "source": "test"}
    return run


def test_warning_when_the_gpu_idles_in_the_span():
    idle = warnings_for(_cuda_run(10.0, 2.0, 4.0))
    assert any("busy 4 ms of the 10 ms event span" in w and "60%" in w for w in idle), idle
    assert not any("busy" in w for w in warnings_for(_cuda_run(10.0, 2.0, 9.0)))  # 90 % busy
    assert not any("busy" in w for w in warnings_for(_cuda_run(10.0, 2.0, None)))  # not measured
    # launch-bound: the enqueue warning says it already, once
    bound = warnings_for(_cuda_run(10.0, 9.5, 4.0))
    assert len([w for w in bound if "host overhead" in w]) == 1 and not any("busy" in w for w in bound)


def test_reports_show_and_keep_it():
    measured, cpu = _cuda_run(10.0, 2.0, 4.0), Run(label="m [onnxruntime]", backend="onnxruntime", device="cpu",
                                                  precision="fp32", batch=1)
    cpu.figures["model"] = Figure(FIGURES["model"], [20.0] * 3, 1)
    report = LatencyReport(kind="profile", runs=[measured, cpu], environment={}, settings={},
                           created="2026-01-01T00:00:00+00:00")
    header, rows = tables.summary_rows(report)
    column = header.index("GPU busy ms")
    assert header[column - 1] == "median ms"
    assert [row[column] for row in rows] == ["4.000", "—"]
    terminal_header, terminal_rows = terminal.terminal_rows(report)
    assert terminal_header[terminal_header.index("median ms") + 1] == "GPU busy ms"
    bench = LatencyReport(kind="bench", runs=[measured, cpu], environment={}, settings={},
                          created="2026-01-01T00:00:00+00:00")
    bench_header, bench_rows = tables.summary_rows(bench)
    assert [row[bench_header.index("GPU busy ms")] for row in bench_rows] == ["4.000", "—"]
    # a report without any GPU-busy figure (CPU runs) has no column of dashes
    cpu_only = LatencyReport(kind="profile", runs=[cpu], environment={}, settings={}, created="2026-01-01T00:00:00+00:00")
    assert "GPU busy ms" not in tables.summary_rows(cpu_only)[0]
    assert "GPU busy ms" not in terminal.terminal_rows(cpu_only)[0]
    again = LatencyReport.from_dict(report.to_dict())
    assert again.runs[0].gpu_busy == measured.gpu_busy and again.runs[1].gpu_busy is None
    older = report.to_dict()
    del older["runs"][0]["gpu_busy"]  # a report written before the field existed still reads
    assert LatencyReport.from_dict(older).runs[0].gpu_busy is None
