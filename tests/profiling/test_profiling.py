"""Profiling: real tiny models through torch and ONNX Runtime, and the bench schedule with fake runners."""

from __future__ import annotations

import pytest
import torch

from maskrt.backends.select import RunnerSpec
from maskrt.core.errors import MaskrtError
from maskrt.core.parsing import parse_batches
from maskrt.profiling.measure import ProfileSettings, bench, profile
from maskrt.profiling.report import FIGURES, STAGES, Figure, Run, warnings_for
from tests.profiling.perf_helpers import FakeSpec, tiny_files, tiny_model, tiny_torch_spec

FAST = dict(warmup_iterations=1, iterations=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("perf")
    ckpt, dyn = tiny_files(folder, dynamic_batch=True)
    _, fixed = tiny_files(folder, dynamic_batch=False)
    return ckpt, dyn, fixed


def _sane(run: Run, iterations: int):
    s = run.stat("model")
    assert run.status == "ok" and s.count == iterations
    assert 0 < s.min <= s.median <= s.p90 <= s.p99 <= s.max < 60_000
    assert s.throughput > 0 and s.fps > 0
    assert run.memory["peak_rss_mb"] > 10


def test_profile_onnxruntime_with_stages_and_a_batch_sweep(files):
    _, dyn, _ = files
    report = profile(RunnerSpec(str(dyn)), [1, 2], ProfileSettings(**FAST, stages=True))
    assert [r.batch for r in report.runs] == [1, 2] and report.kind == "profile"
    for run in report.runs:
        _sane(run, 3)
        assert run.backend == "onnxruntime" and run.providers == ["CPUExecutionProvider"]
        assert set(run.figures) == {"model", *STAGES, "end_to_end"}
        for name, fig in run.figures.items():
            assert fig.includes == FIGURES[name] and len(fig.times_ms) == 3
            assert all(t >= 0 for t in fig.times_ms)
        # end to end is the sum of the stages of the same iteration
        for k in range(3):
            parts = sum(run.figures[s].times_ms[k] for s in STAGES)
            assert run.figures["end_to_end"].times_ms[k] == pytest.approx(parts, rel=1e-6, abs=1e-3)
        assert run.model["sha256"] and run.model["size_bytes"] == dyn.stat().st_size
    assert report.environment["cpu_cores"] >= 1 and report.environment["onnxruntime"]


def test_profile_torch_checkpoint(files):
    ckpt, _, _ = files
    report = profile(tiny_torch_spec(ckpt), [1], ProfileSettings(**FAST))
    (run,) = report.runs
    _sane(run, 3)
    assert run.backend == "torch" and run.device == "cpu" and run.timing.startswith("host clock")
    assert "enqueue" not in run.figures  # CUDA only


def test_fixed_batch_model_refuses_another_batch_before_measuring(files):
    _, _, fixed = files
    with pytest.raises(MaskrtError, match="takes batch 1 only .*--dynamic-batch"):
        profile(RunnerSpec(str(fixed)), [1, 2], ProfileSettings(**FAST))


@pytest.mark.parametrize("spec,match", [
    (RunnerSpec("missing.onnx"), "model not found"),
    (RunnerSpec(None, backend="tvm"), "unknown backend"),
    (RunnerSpec(None, backend="tensorrt"), "needs an engine"),
    (RunnerSpec(None, backend="torch", arch="maskrcnn_resnet18_fpn"), "--random-weights"),
    (RunnerSpec(None, backend="torch", arch="maskrcnn_resnet18_fpn", random_weights=True, cuda_graph=True),
     "CUDA graphs need|--cuda-graph needs"),
])
def test_bad_specs(spec, match):
    with pytest.raises(MaskrtError, match=match):
        spec.check()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a machine without CUDA")
def test_cuda_without_cuda_is_one_clear_error(files):
    ckpt, dyn, _ = files
    with pytest.raises(MaskrtError, match="no CUDA device"):
        tiny_torch_spec(ckpt, device="cuda").check()
    with pytest.raises(MaskrtError, match="CUDA provider"):
        RunnerSpec(str(dyn), device="cuda").check()


@pytest.mark.parametrize("kw,match", [
    ({"iterations": 0}, "--iterations"), ({"warmup_iterations": -1}, "--warmup"), ({"duration": 0}, "--duration"),
])
def test_bad_settings(kw, match):
    with pytest.raises(MaskrtError, match=match):
        ProfileSettings(**kw).check()


def test_parse_batches():
    assert parse_batches("1,2, 4,2") == [1, 2, 4]
    for bad in ("0", "a", "1,-2", ""):
        with pytest.raises(MaskrtError):
            parse_batches(bad)


def test_bench_alternates_the_order_and_survives_a_failing_row():
    log: list = []
    specs = [FakeSpec("a", log), FakeSpec("b", log), FakeSpec("c", log, fail_at=4), FakeSpec("d", log)]
    report = bench(specs, settings=ProfileSettings(warmup_iterations=1, iterations=4))
    status = {r.label: r.status for r in report.runs}
    assert status == {"a": "ok", "b": "ok", "c": "failed", "d": "ok"}
    failed = report.runs[2]
    assert failed.error == "RuntimeError: device lost" and len(failed.figures["model"].times_ms) == 2
    measured = log[4:]  # after one warm-up call each
    # round 0 forward, round 1 reverse (c fails on its 3rd measured call and drops out), ...
    assert measured[:8] == ["a", "b", "c", "d", "d", "c", "b", "a"]
    assert measured[8:] == ["a", "b", "d", "d", "b", "a"]
    assert all(len(r.figures["model"].times_ms) == 4 for r in report.runs if r.status == "ok")


def test_bench_row_that_cannot_open_is_reported_and_others_run(files):
    _, dyn, _ = files
    report = bench([RunnerSpec("nowhere.onnx"), RunnerSpec(str(dyn))], settings=ProfileSettings(**FAST))
    assert report.runs[0].status == "failed" and "model not found" in report.runs[0].error
    _sane(report.runs[1], 3)


def test_ctrl_c_keeps_what_was_measured():
    log: list = []
    report = bench([FakeSpec("a", log), FakeSpec("b", log, interrupt_at=4)],
                   settings=ProfileSettings(warmup_iterations=1, iterations=10))
    assert report.interrupted
    assert [r.status for r in report.runs] == ["interrupted", "interrupted"]
    assert len(report.runs[0].figures["model"].times_ms) >= 2


def test_profile_ctrl_c_during_measurement_returns_partial_report():
    log: list = []
    report = profile(FakeSpec("a", log, interrupt_at=5), [1], ProfileSettings(warmup_iterations=1, iterations=50))
    (run,) = report.runs
    assert report.interrupted and run.status == "interrupted" and len(run.figures["model"].times_ms) == 3


def _run_with(**figures):
    run = Run(label="x", backend="torch", device="cuda", precision="fp32", batch=1)
    for name, times in figures.items():
        run.figures[name] = Figure(FIGURES[name], list(times))
    return run


def test_warnings():
    assert warnings_for(_run_with(model=[10.0] * 20)) == []
    noisy = warnings_for(_run_with(model=[10.0, 12.0] * 10))
    assert len(noisy) == 1 and "coefficient of variation 9.1%" in noisy[0]
    launch = warnings_for(_run_with(model=[10.0] * 5, enqueue=[9.5] * 5))
    assert len(launch) == 1 and "--cuda-graph" in launch[0]
    copies = warnings_for(_run_with(model=[10.0] * 5, preprocess=[1.0] * 5, h2d=[3.0] * 5, inference=[10.0] * 5,
                                    d2h=[3.0] * 5, postprocess=[1.0] * 5, end_to_end=[18.0] * 5))
    assert len(copies) == 1 and "transfers are comparable to compute" in copies[0]
    host = warnings_for(_run_with(model=[10.0] * 5, preprocess=[6.0] * 5, h2d=[0.0] * 5, inference=[10.0] * 5,
                                  d2h=[0.0] * 5, postprocess=[6.0] * 5, end_to_end=[22.0] * 5))
    assert len(host) == 1 and "bound by the host" in host[0]


def test_tiny_model_helper_is_deterministic():
    a, b = tiny_model(), tiny_model()
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
