"""Latency and throughput of any runner, and of each stage of the Predictor.

``profile(spec, batches, settings)`` measures one model on one backend over a sweep of batch sizes and returns a
:class:`~maskrt.profiling.report.LatencyReport`; ``bench(specs, batch, settings)`` measures several side by side,
alternating between them so that a drifting machine does not favour one. The report keeps every raw time.

What each figure includes is stated in :data:`~maskrt.profiling.report.FIGURES` and copied into every report.
Host figures are timed with ``time.perf_counter``; the model figure of a runner that declares
``capabilities.device_timing`` with CUDA events on its stream (plus the host time to enqueue the work, to show
launch overhead). Inputs rotate among several different batches of images.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

from maskrt.backends.select import RunnerSpec, common_batch
from maskrt.core.environment import environment
from maskrt.core.errors import MaskrtError, one_line
from maskrt.data.images import sample_images
from maskrt.inference.predictor import make_batch, postprocess_batch, prepare
from maskrt.profiling.report import FIGURES, STAGES, Figure, LatencyReport, Run, warnings_for


@dataclass
class ProfileSettings:
    """How long to warm up and measure. Iteration counts win over durations when given."""

    warmup_iterations: Optional[int] = None
    warmup_seconds: float = 1.0
    iterations: Optional[int] = None
    duration: float = 5.0
    min_iterations: int = 10
    stages: bool = False
    distinct_batches: int = 4
    layers: bool = False  # per-layer profile (TensorRT engines)
    layer_iterations: int = 20

    def check(self) -> None:
        if self.iterations is not None and self.iterations <= 0:
            raise MaskrtError(f"--iterations must be >= 1, got {self.iterations}")
        if self.warmup_iterations is not None and self.warmup_iterations < 0:
            raise MaskrtError(f"--warmup must be >= 0, got {self.warmup_iterations}")
        if not 0 <= self.warmup_seconds < math.inf:  # NaN and inf would warm up forever
            raise MaskrtError(f"--warmup-seconds must be a finite number >= 0, got {self.warmup_seconds}")
        if not 0 < self.duration < math.inf:
            raise MaskrtError(f"--duration must be a finite number of seconds > 0, got {self.duration}")
        if self.min_iterations < 1:
            raise MaskrtError(f"the minimum iteration count must be >= 1, got {self.min_iterations}")
        if self.distinct_batches < 1:
            raise MaskrtError(f"distinct input batches must be >= 1, got {self.distinct_batches}")
        if self.layer_iterations < 1:
            raise MaskrtError(f"layer profile iterations must be >= 1, got {self.layer_iterations}")

    def enough(self, count: int, elapsed: float) -> bool:
        if self.iterations is not None:
            return count >= self.iterations
        return count >= self.min_iterations and elapsed >= self.duration

    def warm(self, count: int, elapsed: float) -> bool:
        if self.warmup_iterations is not None:
            return count >= self.warmup_iterations
        return count >= 1 and elapsed >= self.warmup_seconds


class ProgressHook:
    """Told how far a measurement is; the CLI shows it as a progress bar. The default shows nothing."""

    def begin(self, label: str, total: Optional[int], seconds: Optional[float]) -> None:
        pass

    def update(self, count: int, elapsed: float) -> None:
        pass

    def end(self) -> None:
        pass


# -- measuring ----------------------------------------------------------------------------------------------------
class _Batches:
    """``distinct`` different batches of prepared canvases (and their uploads), used in rotation."""

    def __init__(self, runner, images: list, batch: int, distinct: int):
        self.images = images
        self.batch = batch
        self.groups = []
        n = len(images)
        for d in range(distinct):
            idx = [(d * batch + i) % n for i in range(batch)]
            self.groups.append(idx)
        sizes = "image_sizes" in runner.input_specs()
        self.feeds = [make_batch([prepare(images[i], runner.meta) for i in idx], None, sizes).feeds
                      for idx in self.groups]
        self.uploaded = [runner.upload(f) for f in self.feeds]


def _memory_reset() -> None:
    try:  # Linux: writing 5 resets the peak resident set size (VmHWM) of this process.
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def peak_rss_mb() -> Optional[float]:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):
        return None


class _Timer:
    """Times ``runner.execute``: CUDA events on the runner's stream when it declares device timing, else the host
    clock."""

    def __init__(self, runner):
        self.runner = runner
        self.cuda = runner.capabilities.device_timing
        self.stream = runner.cuda_stream
        if self.cuda:
            import torch

            self.torch = torch
            with torch.cuda.device(runner.device):  # events belong to the runner's device, not the current one
                self.start = torch.cuda.Event(enable_timing=True)
                self.stop = torch.cuda.Event(enable_timing=True)

    @property
    def description(self) -> str:
        # The span between two events: the GPU's compute time only when execute() never waits for the device and
        # enqueues faster than the GPU runs; otherwise it also holds the GPU's idle gaps.
        return ("CUDA events on the runner's stream (span from the first to the last launch of execute(), GPU idle "
                "gaps included)" if self.cuda else "host clock (time.perf_counter)")

    def execute(self, uploaded) -> tuple[object, float, Optional[float]]:
        """Run once; return (outputs, model ms, enqueue ms or None)."""
        if not self.cuda:
            t0 = time.perf_counter()
            out = self.runner.execute(uploaded)
            return out, (time.perf_counter() - t0) * 1000.0, None
        with self.torch.cuda.device(self.runner.device):
            self.start.record(self.stream)
            t0 = time.perf_counter()
            out = self.runner.execute(uploaded)
            enqueue = (time.perf_counter() - t0) * 1000.0
            self.stop.record(self.stream)
        self.stop.synchronize()
        return out, self.start.elapsed_time(self.stop), enqueue


GPU_BUSY_RUNS = 5
GPU_BUSY_SOURCE = ("sum of the CUDA kernel times torch.profiler (CUPTI) recorded over {n} executions, per "
                   "execution; copies and memsets excluded")


def kernel_ms(events) -> Optional[float]:
    """Total ms of the CUDA kernels among profiler ``events`` (``torch.profiler.profile(...).events()``): device
    events other than copies and memsets. None when there is none (nothing was recorded)."""
    total, seen = 0.0, 0
    for evt in events:
        if not str(getattr(evt, "device_type", "")).endswith("CUDA"):
            continue
        if str(getattr(evt, "name", "")).startswith(("Memcpy", "Memset")):
            continue
        total += float(getattr(evt, "self_device_time_total", getattr(evt, "self_cuda_time_total", 0.0)))
        seen += 1
    return total / 1000.0 if seen else None


def gpu_busy_ms(fn: Callable[[], object], runs: int = GPU_BUSY_RUNS) -> Optional[float]:
    """The GPU's busy time per call of ``fn``: the sum of its CUDA kernel times (torch.profiler) over ``runs`` calls,
    divided by ``runs``. Beside the event span of a call it shows how much of that span the GPU computed: a span
    much longer than the busy time means the GPU waited for the host (launches, syncs). None without a CUDA build of
    torch, or when the profiler recorded no kernel."""
    try:
        import torch
        from torch.profiler import ProfilerActivity, profile
    except ImportError:
        return None
    if not torch.cuda.is_available():
        return None
    os.environ.setdefault("TEARDOWN_CUPTI", "0")  # PyTorch's guard against a CUPTI teardown crash with CUDA graphs
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(runs):
            fn()
        torch.cuda.synchronize()
    total = kernel_ms(prof.events())
    return None if total is None else total / runs


def _loop(step: Callable[[int], None], settings: ProfileSettings, hook: ProgressHook, label: str,
          warmup: bool) -> int:
    """Call ``step(i)`` until the warm-up or measurement budget is spent; return the count."""
    if warmup:
        total = settings.warmup_iterations
        seconds = None if total is not None else settings.warmup_seconds
        done = settings.warm
    else:
        total = settings.iterations
        seconds = None if total is not None else settings.duration
        done = settings.enough
    hook.begin(label, total, seconds)
    t0 = time.perf_counter()
    count = 0
    try:
        while not done(count, time.perf_counter() - t0):
            step(count)
            count += 1
            hook.update(count, time.perf_counter() - t0)
    finally:
        hook.end()
    return count


def measure_runner(runner, spec: RunnerSpec, images: list, batch: int, settings: ProfileSettings,
                   hook: Optional[ProgressHook] = None) -> Run:
    """Warm up and time one active runner at one batch size. A KeyboardInterrupt during measurement returns the
    run so far with status "interrupted"."""
    hook = hook or ProgressHook()
    timer = _Timer(runner)
    run = Run(label=spec.name(), backend=runner.backend, device=runner.device, precision=spec.precision, batch=batch,
              model=spec.model_info(), cuda_graph=spec.cuda_graph)
    _describe(run, runner, spec, timer, settings.stages)
    batches = _Batches(runner, images, batch, settings.distinct_batches)
    _memory_reset()
    cuda_mem = runner.capabilities.allocator_stats
    if cuda_mem:
        timer.torch.cuda.reset_peak_memory_stats(runner.device)

    def model_step(i: int, record: bool = True) -> None:
        _, ms, enq = timer.execute(batches.uploaded[i % len(batches.uploaded)])
        if record:
            run.figures["model"].times_ms.append(ms)
            if enq is not None:
                run.figures["enqueue"].times_ms.append(enq)

    try:
        _loop(lambda i: model_step(i, record=False), settings, hook, f"{run.label} b{batch} warm-up", warmup=True)
        _loop(model_step, settings, hook, f"{run.label} b{batch}", warmup=False)
        if settings.stages:
            _loop(lambda i: _stage_step(runner, batches, i, run, record=False), settings, hook,
                  f"{run.label} b{batch} stages warm-up", warmup=True)
            _loop(lambda i: _stage_step(runner, batches, i, run), settings, hook, f"{run.label} b{batch} stages",
                  warmup=False)
        if settings.layers:
            if runner.capabilities.layer_profile:
                run.layers = runner.profile_layers(batches.uploaded[0], settings.layer_iterations)
            else:
                run.notes.append(f"--layers: the {runner.backend} backend has no per-layer profile (TensorRT engines do)")
    except KeyboardInterrupt:
        run.status = "interrupted"
        run.notes.append("interrupted (Ctrl-C): the figures hold what was measured before")
    _measure_gpu_busy(run, runner, timer, batches.uploaded[0])
    run.memory["peak_rss_mb"] = peak_rss_mb()
    if cuda_mem:
        run.memory["peak_gpu_mb"] = timer.torch.cuda.max_memory_allocated(runner.device) / 2**20
        run.memory["gpu_note"] = "torch caching allocator peak (allocated tensors)"
    elif runner.device.startswith("cuda"):
        run.memory["peak_gpu_mb"] = None
        run.memory["gpu_note"] = f"not measured: the {runner.backend} backend's GPU memory is outside torch's allocator"
    run.warnings.extend(warnings_for(run))
    return run


def _measure_gpu_busy(run: Run, runner, timer: _Timer, uploaded) -> None:
    """``run.gpu_busy`` for a runner timed with CUDA events, after its timed runs (the profiler's own overhead is
    not in them)."""
    if not timer.cuda or run.status != "ok":
        return
    try:
        with timer.torch.cuda.device(runner.device):
            busy = gpu_busy_ms(lambda: runner.execute(uploaded))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # the figure is optional; the timed figures stand without it
        run.notes.append(f"GPU-busy time not measured: {one_line(e)}")
        return
    if busy is not None:
        run.gpu_busy = {"ms_per_execute": busy, "executions": GPU_BUSY_RUNS,
                        "source": GPU_BUSY_SOURCE.format(n=GPU_BUSY_RUNS)}


def _describe(run: Run, runner, spec: RunnerSpec, timer: _Timer, stages: bool = False) -> None:
    """Fill in what the active runner tells about itself, and the empty figures it will be timed for."""
    run.device, run.timing = runner.device, timer.description
    run.precision = (runner.meta.precision if runner.meta is not None else None) or spec.precision
    run.providers = runner.providers
    run.notes.extend(runner.notes)
    names = ["model"] + (["enqueue"] if timer.cuda else []) + ([*STAGES, "end_to_end"] if stages else [])
    for name in names:
        run.figures[name] = Figure(FIGURES[name], [], run.batch)


def _stage_step(runner, batches: _Batches, i: int, run: Run, record: bool = True) -> None:
    g = i % len(batches.groups)
    idx = batches.groups[g]
    t0 = time.perf_counter()
    batch = make_batch([prepare(batches.images[j], runner.meta) for j in idx], None, "image_sizes" in batches.feeds[0])
    t1 = time.perf_counter()
    uploaded = runner.upload(batch.feeds)
    runner.synchronize()
    t2 = time.perf_counter()
    outputs = runner.execute(uploaded)
    runner.synchronize()
    t3 = time.perf_counter()
    host = runner.download(outputs)
    t4 = time.perf_counter()
    postprocess_batch(host, batch, runner.meta.class_names)
    t5 = time.perf_counter()
    if record:
        for name, (a, b) in zip((*STAGES, "end_to_end"), ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t0, t5))):
            run.figures[name].times_ms.append((b - a) * 1000.0)


def _new_report(kind: str, settings: ProfileSettings, extra: dict) -> LatencyReport:
    s = asdict(settings)
    s.update(extra)
    return LatencyReport(kind=kind, runs=[], environment=environment(), settings=s,
                         created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def profile(spec: RunnerSpec, batches: Optional[Sequence[int]] = None, settings: Optional[ProfileSettings] = None,
            images_dir: Optional[str] = None, hook: Optional[ProgressHook] = None) -> LatencyReport:
    """Profile one model on one backend at each batch size (one run per batch size; None: the model's own batch,
    1 for a model that takes any)."""
    settings = settings or ProfileSettings()
    settings.check()
    spec.check()
    if batches is None:
        batches = [spec.fixed_batch() or 1]
    images = sample_images(images_dir)
    report = _new_report("profile", settings, {"batches": list(batches), "images": images_dir or "generated",
                                               "input_size": list(spec.input_size or ())})
    runners = [spec.open(b) for b in batches]  # refuse impossible batch sizes before measuring anything
    for b, runner in zip(batches, runners):
        with runner:
            report.settings["input_size"] = list(runner.meta.input_size)
            run = measure_runner(runner, spec, images, b, settings, hook)
        report.runs.append(run)
        if run.status == "interrupted":
            report.interrupted = True
            break
    return report


def bench(specs: Sequence[RunnerSpec], batch: Optional[int] = None, settings: Optional[ProfileSettings] = None,
          images_dir: Optional[str] = None, hook: Optional[ProgressHook] = None, rounds_per_turn: int = 1) -> LatencyReport:
    """Several models/backends side by side at one batch size, measured in alternating order.

    Every row is opened and warmed up first; then the rows take turns (forward order on even rounds, reverse on
    odd ones), ``rounds_per_turn`` iterations per turn, until each row has its iterations (or the duration,
    counted per row, has passed). A row that fails to open or run is reported with its reason and the others go on.
    """
    settings = settings or ProfileSettings()
    settings.check()
    hook = hook or ProgressHook()
    if batch is None:
        batch = common_batch(specs)
    images = sample_images(images_dir)
    report = _new_report("bench", settings, {"batch": batch, "images": images_dir or "generated"})
    live = []  # (run, runner, timer, batches)
    opened = []
    for spec in specs:
        run = Run(label=spec.name(), backend=spec.resolved_backend(), device=spec.device, precision=spec.precision,
                  batch=batch, cuda_graph=spec.cuda_graph)
        report.runs.append(run)
        try:
            run.model = spec.model_info() if not spec.model_path or os.path.isfile(spec.model_path) else {"name": spec.model_path}
            runner = spec.open(batch)
            opened.append(runner)
            runner.activate()
            timer = _Timer(runner)
            _describe(run, runner, spec, timer)
            data = _Batches(runner, images, batch, settings.distinct_batches)
            _loop(lambda i, t=timer, d=data: t.execute(d.uploaded[i % len(d.uploaded)]), settings, hook,
                  f"{run.label} warm-up", warmup=True)
            live.append((run, runner, timer, data))
        except KeyboardInterrupt:
            run.status, report.interrupted = "interrupted", True
            break
        except Exception as e:  # one row failing must not stop the others
            run.status, run.error = "failed", _failure(e)
    elapsed = {id(r): 0.0 for r, *_ in live}
    round_no = 0
    try:
        total = settings.iterations
        hook.begin("bench (alternating)", total * len(live) if total else None, None if total else settings.duration)
        while live and not all(settings.enough(len(r.figures["model"].times_ms), elapsed[id(r)]) for r, *_ in live):
            order = live if round_no % 2 == 0 else live[::-1]
            for run, _runner, timer, data in order:
                if settings.enough(len(run.figures["model"].times_ms), elapsed[id(run)]):
                    continue
                for _ in range(rounds_per_turn):
                    t0 = time.perf_counter()
                    try:
                        _, ms, enq = timer.execute(data.uploaded[len(run.figures["model"].times_ms) % len(data.uploaded)])
                    except KeyboardInterrupt:
                        raise
                    except Exception as e:
                        run.status, run.error = "failed", _failure(e)
                        break
                    elapsed[id(run)] += time.perf_counter() - t0
                    run.figures["model"].times_ms.append(ms)
                    if enq is not None:
                        run.figures["enqueue"].times_ms.append(enq)
            live = [item for item in live if item[0].status == "ok"]
            round_no += 1
            hook.update(sum(len(r.figures["model"].times_ms) for r in report.runs if "model" in r.figures),
                        sum(elapsed.values()))
        for run, runner, timer, data in live:
            _measure_gpu_busy(run, runner, timer, data.uploaded[0])
    except KeyboardInterrupt:
        report.interrupted = True
        for run, *_ in live:
            run.status = "interrupted"
    finally:
        hook.end()
        for runner in opened:
            runner.deactivate()
    report.settings["rounds"] = round_no
    for run in report.runs:
        run.memory["peak_rss_mb"] = peak_rss_mb()
        run.memory["note"] = "whole process, all rows loaded together"
        if run.status in ("ok", "interrupted"):
            run.warnings.extend(warnings_for(run))
    return report


def _failure(e: BaseException) -> str:
    """A failed row's reason: a user error's own line, or a bug's type and first line."""
    return one_line(e) if isinstance(e, MaskrtError) else f"{type(e).__name__}: {one_line(e)}"
