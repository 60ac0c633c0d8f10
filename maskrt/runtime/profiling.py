"""Latency and throughput of any runner, and of each stage of the Predictor.

``profile(spec, settings)`` measures one model on one backend over a sweep of batch sizes and returns a
:class:`LatencyReport`; ``bench(specs, settings)`` measures several side by side, alternating between them so
that a drifting machine does not favour one. The report keeps every raw time; statistics follow
:mod:`maskrt.runtime.stats`; renderers live in :mod:`maskrt.runtime.reports`.

What each figure includes is stated in ``FIGURES`` and copied into every report. Host figures are timed with
``time.perf_counter``; the model figure of a torch CUDA runner with CUDA events on the runner's stream (plus the
host time to enqueue the work, to show launch overhead). Inputs rotate among several different images.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional, Sequence

from maskrt.errors import MaskrtError
from maskrt.runtime.stats import DEFINITIONS, PERCENTILES, Stats, summarize

SCHEMA = "maskrt.latency-report"
SCHEMA_VERSION = 1

FIGURES = {
    "model": "the runner alone: execute() on a batch already on the device (network, in-graph NMS and output "
             "formatting); no image pre/post-processing, no host/device copies (as trtexec's GPU compute time)",
    "enqueue": "host time for execute() to return before synchronising: launch overhead (CUDA only)",
    "preprocess": "Predictor pre-processing on the host: resize each image, place it on the export canvas, stack "
                  "the batch",
    "h2d": "host-to-device copy of the uint8 batch (0 for CPU backends; onnxruntime copies inside inference)",
    "inference": "execute() inside the Predictor, synchronised",
    "d2h": "device-to-host copy of the outputs, synchronised (for onnxruntime: wrapping its host arrays)",
    "postprocess": "Predictor post-processing on the host: clip and rescale boxes, paste masks into each original "
                   "image",
    "end_to_end": "images in memory to Detections: the sum of the five stages above for each batch",
}
STAGES = ("preprocess", "h2d", "inference", "d2h", "postprocess")

CV_WARNING = 0.025


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
        if self.warmup_seconds < 0:
            raise MaskrtError(f"--warmup-seconds must be >= 0, got {self.warmup_seconds}")
        if self.duration <= 0:
            raise MaskrtError(f"--duration must be > 0 seconds, got {self.duration}")
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


@dataclass
class Figure:
    """Raw times (ms, one per iteration of ``batch`` images) and what they include."""

    includes: str
    times_ms: list
    batch: int = 1

    @property
    def stats(self) -> Optional[Stats]:
        return summarize(self.times_ms, self.batch) if self.times_ms else None

    def to_dict(self) -> dict:
        stats = self.stats
        return {"includes": self.includes, "batch": self.batch, "times_ms": list(self.times_ms),
                "stats": stats.to_dict() if stats else None}

    @classmethod
    def from_dict(cls, d: dict) -> "Figure":
        return cls(d["includes"], [float(t) for t in d["times_ms"]], int(d.get("batch", 1)))


@dataclass
class Run:
    """One model on one backend at one batch size."""

    label: str
    backend: str
    device: str
    precision: str
    batch: int
    model: dict = field(default_factory=dict)
    cuda_graph: bool = False
    providers: list = field(default_factory=list)
    timing: str = "host clock (time.perf_counter)"
    status: str = "ok"
    error: Optional[str] = None
    figures: dict = field(default_factory=dict)
    memory: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    accuracy: Optional[dict] = None
    layers: list = field(default_factory=list)  # per-layer profile: name, mean_ms, percent, runs (TensorRT)

    def stat(self, figure: str = "model") -> Optional[Stats]:
        f = self.figures.get(figure)
        return f.stats if f is not None else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["figures"] = {k: v.to_dict() for k, v in self.figures.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Run":
        import dataclasses

        known = {f.name for f in dataclasses.fields(cls)}
        d = {k: v for k, v in d.items() if k in known}  # fields added later in the same schema version are skipped
        d["figures"] = {k: Figure.from_dict(v) for k, v in d.get("figures", {}).items()}
        return cls(**d)


@dataclass
class LatencyReport:
    """A profile or bench result: environment, settings and runs with every raw time."""

    kind: str
    runs: list
    environment: dict = field(default_factory=dict)
    settings: dict = field(default_factory=dict)
    created: str = ""
    interrupted: bool = False
    schema: str = SCHEMA
    schema_version: int = SCHEMA_VERSION

    def to_dict(self) -> dict:
        return {
            "schema": self.schema,
            "schema_version": self.schema_version,
            "kind": self.kind,
            "created": self.created,
            "interrupted": self.interrupted,
            "definitions": {"figures": FIGURES, "statistics": DEFINITIONS, "percentiles": list(PERCENTILES)},
            "environment": self.environment,
            "settings": self.settings,
            "runs": [r.to_dict() for r in self.runs],
        }

    @classmethod
    def from_dict(cls, d: dict) -> "LatencyReport":
        if d.get("schema") != SCHEMA:
            raise MaskrtError(f"not a maskrt latency report (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        if int(d.get("schema_version", 0)) > SCHEMA_VERSION:
            raise MaskrtError(f"latency report schema version {d['schema_version']} is newer than this maskrt reads "
                              f"({SCHEMA_VERSION}); upgrade maskrt")
        return cls(kind=d["kind"], runs=[Run.from_dict(r) for r in d["runs"]], environment=d.get("environment", {}),
                   settings=d.get("settings", {}), created=d.get("created", ""),
                   interrupted=bool(d.get("interrupted", False)), schema=d["schema"],
                   schema_version=int(d["schema_version"]))


# -- what to run ------------------------------------------------------------------------------------------------
@dataclass
class RunnerSpec:
    """A model file and how to run it.

    ``model_path``: an .onnx export, a TensorRT engine (.engine / .plan / .trt, built by ``maskrt build``), or a
    checkpoint (.pth / .safetensors) with ``arch``; None with ``arch`` and ``random_weights`` for a preset with
    random weights (latency only). ``backend``: "torch", "onnxruntime", "onnxruntime-trt" (ONNX Runtime's
    TensorRT execution provider, with ``ort_trt_options``) or "tensorrt" (engines; always on CUDA).
    """

    model_path: Optional[str]
    backend: str = "auto"
    device: str = "cpu"
    precision: str = "fp32"
    cuda_graph: bool = False
    arch: Optional[str] = None
    num_classes: Optional[int] = None  # checkpoints: default the preset's (91 for COCO)
    input_size: Optional[tuple] = None  # checkpoints: default the preset's export size (800x1344 for COCO)
    random_weights: bool = False
    label: Optional[str] = None
    model_kwargs: dict = field(default_factory=dict)  # extra preset arguments for torch (e.g. proposal counts)
    ort_trt_options: dict = field(default_factory=dict)  # onnxruntime-trt: see runners.ort_trt_provider_options

    def resolved_backend(self) -> str:
        if self.backend != "auto":
            return self.backend
        if self.is_engine:
            return "tensorrt"
        return "onnxruntime" if self.is_onnx else "torch"

    @property
    def is_onnx(self) -> bool:
        return bool(self.model_path) and self.model_path.lower().endswith(".onnx")

    @property
    def is_engine(self) -> bool:
        from maskrt.export.engine import is_engine_path

        return is_engine_path(self.model_path)

    def name(self) -> str:
        if self.label:
            return self.label
        base = os.path.basename(self.model_path) if self.model_path else f"{self.arch} (random weights)"
        variant = self.resolved_backend()
        if self.precision != "fp32" and not self.is_onnx and not self.is_engine:
            variant += f" {self.precision}"
        if self.cuda_graph:
            variant += " + CUDA graph"
        return f"{base} [{variant}]"

    def check(self) -> None:
        backend = self.resolved_backend()
        if backend not in BACKEND_NAMES:
            raise MaskrtError(f"unknown backend {backend!r}; choose {', '.join(BACKEND_NAMES)}")
        if self.device not in ("cpu", "cuda"):
            raise MaskrtError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.model_path and not os.path.isfile(self.model_path):
            raise MaskrtError(f"model not found: {self.model_path}")
        if backend == "tensorrt":
            if not self.is_engine:
                raise MaskrtError("the tensorrt backend needs an engine (.engine); build one from the .onnx export "
                                  "with `maskrt build`")
            _require_cuda(backend)
            return
        if self.is_engine:
            raise MaskrtError(f"{os.path.basename(self.model_path)} is a TensorRT engine: use --backend tensorrt "
                              "(or auto)")
        if backend in ("onnxruntime", "onnxruntime-trt"):
            if not self.is_onnx:
                raise MaskrtError(f"the {backend} backend needs an .onnx file; export the checkpoint with `maskrt export`")
            if self.cuda_graph:
                raise MaskrtError("--cuda-graph applies to the torch backend only (and to TensorRT engines)")
            if backend == "onnxruntime-trt":
                _require_cuda(backend)
                return
        else:
            if self.is_onnx:
                raise MaskrtError("the torch backend needs a checkpoint with --arch, not an .onnx file")
            if not self.arch:
                raise MaskrtError("a checkpoint needs --arch (see `maskrt models`)")
            if not self.model_path and not self.random_weights:
                from maskrt.model.presets import get_preset

                embedded = get_preset(self.arch).weights_path()
                if embedded is None:
                    raise MaskrtError("give a checkpoint, or --random-weights to time the preset with random weights")
                self.model_path = embedded  # the preset's embedded weights
        if self.device == "cuda":
            _require_cuda(backend)
        if self.cuda_graph and self.device != "cuda":
            raise MaskrtError("--cuda-graph needs --device cuda")

    def model_info(self) -> dict:
        from maskrt.runtime.environment import file_sha256

        info = {"name": os.path.basename(self.model_path) if self.model_path else self.arch,
                "path": os.path.abspath(self.model_path) if self.model_path else None, "arch": self.arch,
                "random_weights": self.random_weights}
        if self.model_path:
            info["size_bytes"] = os.path.getsize(self.model_path)
            info["sha256"] = file_sha256(self.model_path)
        return info

    def open(self, batch: Optional[int]):
        """A runner (not yet active) for ``batch`` images per call (None: the model's own)."""
        from maskrt.runtime.runners import OrtRunner, TorchRunner

        self.check()
        if self.resolved_backend() == "tensorrt":
            return _open_engine(self.model_path, batch, self.cuda_graph)
        if self.resolved_backend() in ("onnxruntime", "onnxruntime-trt"):
            if self.resolved_backend() == "onnxruntime-trt":
                runner = OrtRunner(self.model_path, trt_options=self.ort_trt_options or {})
            else:
                providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda"
                             else ["CPUExecutionProvider"])
                runner = OrtRunner(self.model_path, providers=providers)
            fixed = runner.batch
            if batch is not None and fixed is not None and batch != fixed:
                raise MaskrtError(f"{os.path.basename(self.model_path)} takes batch {fixed} only (fixed-batch export); "
                                  f"re-export with --dynamic-batch (or --batch {batch}) to run batch {batch}")
            return runner
        import torch

        from maskrt.model import build, load_checkpoint

        from maskrt.model.presets import resolve_sizes

        sizes = resolve_sizes(self.arch, self.input_size)
        h, w = sizes.pop("input_size")
        torch.manual_seed(0)
        model = build(self.arch, num_classes=self.num_classes, **{**sizes, **self.model_kwargs})
        if self.model_path:
            load_checkpoint(self.model_path, model)
        return TorchRunner(model.eval(), (h, w), batch or 1, device=self.device, precision=self.precision,
                           cuda_graph=self.cuda_graph)


BACKEND_NAMES = ("torch", "onnxruntime", "onnxruntime-trt", "tensorrt")


def _open_engine(path: str, batch: Optional[int], cuda_graph: bool):
    from maskrt.runtime.trt_runner import TrtRunner

    runner = TrtRunner(path, cuda_graph=cuda_graph)
    spec = runner.input_specs().get("images")
    fixed = spec.shape[0] if spec is not None else None
    name = os.path.basename(path)
    if batch is not None and fixed is not None and batch != fixed:
        raise MaskrtError(f"{name} takes batch {fixed} only; rebuild it from a --dynamic-batch export to run batch {batch}")
    if batch is not None and fixed is None:
        entry = next((e for e in runner.sidecar["inputs"] if e["name"] == "images"), {})
        lo, hi = (entry.get("min") or [1])[0], (entry.get("max") or [batch])[0]
        if not lo <= batch <= hi:
            raise MaskrtError(f"{name} takes batch {lo} to {hi} (its optimization profile); rebuild it with "
                              f"`maskrt build --min-batch/--max-batch` to run batch {batch}")
    return runner


def _require_cuda(backend: str) -> None:
    if backend == "tensorrt":
        import torch

        from maskrt.export.engine_trt import import_tensorrt

        import_tensorrt()
        if not torch.cuda.is_available():
            raise MaskrtError("TensorRT engines run on an NVIDIA GPU: torch sees no CUDA device")
        return
    if backend == "onnxruntime-trt":
        from maskrt.runtime.runners import import_onnxruntime

        available = import_onnxruntime().get_available_providers()
        if "TensorrtExecutionProvider" not in available:
            raise MaskrtError(f"the onnxruntime-trt backend needs onnxruntime's TensorRT provider (pip install "
                              f"onnxruntime-gpu tensorrt); this onnxruntime offers {available}")
        return
    if backend == "torch":
        import torch

        if not torch.cuda.is_available():
            raise MaskrtError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
    else:
        from maskrt.runtime.runners import import_onnxruntime

        available = import_onnxruntime().get_available_providers()
        if "CUDAExecutionProvider" not in available:
            raise MaskrtError(f"--device cuda needs onnxruntime's CUDA provider (pip install onnxruntime-gpu); this "
                              f"onnxruntime offers {available}")


def parse_batches(text: str | Sequence[int]) -> list[int]:
    """"1,2,4,8" -> [1, 2, 4, 8]; each must be a positive integer."""
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            b = int(str(item).strip())
        except ValueError:
            raise MaskrtError(f"--batch must be positive integers separated by commas (e.g. 1,2,4), got {text!r}") from None
        if b < 1:
            raise MaskrtError(f"batch sizes must be >= 1, got {b}")
        if b not in out:
            out.append(b)
    if not out:
        raise MaskrtError("--batch needs at least one batch size")
    return out


# -- inputs ------------------------------------------------------------------------------------------------------
def load_images(images_dir: Optional[str], count: int = 8, seed: int = 0) -> list:
    """uint8 (3, H, W) images: the readable images of ``images_dir``, or ``count`` generated ones of several
    sizes and aspect ratios."""
    from maskrt.data.images import IMAGE_EXTENSIONS, read_image, synthetic_image

    if images_dir is None:
        sizes = [(480, 640), (640, 480), (600, 800), (427, 640), (512, 512), (375, 500), (720, 1280), (640, 427)]
        return [synthetic_image(*sizes[i % len(sizes)], seed + i) for i in range(count)]
    if not os.path.isdir(images_dir):
        raise MaskrtError(f"--images {images_dir} is not a folder")
    names = sorted(n for n in os.listdir(images_dir) if n.lower().endswith(IMAGE_EXTENSIONS))
    images = []
    for n in names:
        try:
            images.append(read_image(os.path.join(images_dir, n)))
        except MaskrtError:
            continue
    if not images:
        raise MaskrtError(f"--images {images_dir} has no readable images ({', '.join(IMAGE_EXTENSIONS)})")
    return images


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
        import torch

        from maskrt.runtime.predictor import prepare

        self.images = images
        self.batch = batch
        self.groups = []
        n = len(images)
        for d in range(distinct):
            idx = [(d * batch + i) % n for i in range(batch)]
            self.groups.append(idx)
        self.feeds = []
        for idx in self.groups:
            canvases = [prepare(images[i], runner.meta).canvas for i in idx]
            self.feeds.append({"images": torch.stack(canvases)})
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
    """Times ``runner.execute``: CUDA events for torch on CUDA, else the host clock."""

    def __init__(self, runner):
        self.runner = runner
        self.cuda = runner.backend in ("torch", "tensorrt") and runner.device.startswith("cuda")
        self.stream = getattr(runner, "cuda_stream", None)  # None: the current stream
        if self.cuda:
            import torch

            self.torch = torch
            self.start = torch.cuda.Event(enable_timing=True)
            self.stop = torch.cuda.Event(enable_timing=True)

    @property
    def description(self) -> str:
        return "CUDA events on the runner's stream" if self.cuda else "host clock (time.perf_counter)"

    def execute(self, uploaded) -> tuple[object, float, Optional[float]]:
        """Run once; return (outputs, model ms, enqueue ms or None)."""
        if not self.cuda:
            t0 = time.perf_counter()
            out = self.runner.execute(uploaded)
            return out, (time.perf_counter() - t0) * 1000.0, None
        self.start.record(self.stream)
        t0 = time.perf_counter()
        out = self.runner.execute(uploaded)
        enqueue = (time.perf_counter() - t0) * 1000.0
        self.stop.record(self.stream)
        self.stop.synchronize()
        return out, self.start.elapsed_time(self.stop), enqueue


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
    cuda_mem = timer.cuda and runner.backend == "torch"
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
            if hasattr(runner, "profile_layers"):
                run.layers = runner.profile_layers(batches.uploaded[0], settings.layer_iterations)
            else:
                run.notes.append(f"--layers: the {runner.backend} backend has no per-layer profile (TensorRT engines do)")
    except KeyboardInterrupt:
        run.status = "interrupted"
        run.notes.append("interrupted (Ctrl-C): the figures hold what was measured before")
    run.memory["peak_rss_mb"] = peak_rss_mb()
    if cuda_mem:
        run.memory["peak_gpu_mb"] = timer.torch.cuda.max_memory_allocated(runner.device) / 2**20
        run.memory["gpu_note"] = "torch caching allocator peak (allocated tensors)"
    elif runner.device.startswith("cuda"):
        run.memory["peak_gpu_mb"] = None
        owner = "TensorRT's" if runner.backend == "tensorrt" else "onnxruntime's CUDA"
        run.memory["gpu_note"] = f"not measured: {owner} memory is outside torch's allocator"
    run.warnings.extend(warnings_for(run))
    return run


def _describe(run: Run, runner, spec: RunnerSpec, timer: _Timer, stages: bool = False) -> None:
    """Fill in what the active runner tells about itself, and the empty figures it will be timed for."""
    meta = getattr(runner, "meta", None)
    run.device, run.timing = runner.device, timer.description
    run.precision = getattr(meta, "precision", None) or spec.precision
    run.providers = list(getattr(runner, "active_providers", []) or [])
    run.notes.extend(getattr(runner, "notes", []))
    names = ["model"] + (["enqueue"] if timer.cuda else []) + ([*STAGES, "end_to_end"] if stages else [])
    for name in names:
        run.figures[name] = Figure(FIGURES[name], [], run.batch)


def _stage_step(runner, batches: _Batches, i: int, run: Run, record: bool = True) -> None:
    import torch

    from maskrt.runtime.predictor import postprocess, prepare

    g = i % len(batches.groups)
    idx = batches.groups[g]
    t0 = time.perf_counter()
    prepared = [prepare(batches.images[j], runner.meta) for j in idx]
    feeds = {"images": torch.stack([p.canvas for p in prepared])}
    t1 = time.perf_counter()
    uploaded = runner.upload(feeds)
    runner.synchronize()
    t2 = time.perf_counter()
    outputs = runner.execute(uploaded)
    runner.synchronize()
    t3 = time.perf_counter()
    host = runner.download(outputs)
    t4 = time.perf_counter()
    for k, prep in enumerate(prepared):
        postprocess(host, k, prep, runner.meta.class_names)
    t5 = time.perf_counter()
    if record:
        for name, (a, b) in zip((*STAGES, "end_to_end"), ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5), (t0, t5))):
            run.figures[name].times_ms.append((b - a) * 1000.0)


def warnings_for(run: Run) -> list[str]:
    """trtexec-style warnings on one run's figures."""
    out = []
    model = run.stat("model")
    if model is None:
        return out
    if model.count >= 2 and model.cv > CV_WARNING:
        out.append(f"model latency varies: coefficient of variation {model.cv:.1%} > {CV_WARNING:.1%}; the machine "
                   "is noisy (other load, frequency scaling, thermal limits): compare figures from one run only")
    enqueue = run.stat("enqueue")
    if enqueue is not None and enqueue.median >= 0.8 * model.median:
        hint = ("CUDA graphs are on, yet launches still dominate" if run.cuda_graph
                else "try --cuda-graph to replay the network's kernels from a CUDA graph")
        out.append(f"host overhead: enqueueing takes {enqueue.median:.3g} ms of the {model.median:.3g} ms GPU time "
                   f"(median); the GPU waits for the host: {hint}")
    inference = run.stat("inference")
    if inference is not None:
        h2d, d2h = run.stat("h2d"), run.stat("d2h")
        copies = (h2d.median if h2d else 0.0) + (d2h.median if d2h else 0.0)
        if copies >= 0.5 * inference.median and copies > 0.05:
            out.append(f"copies take {copies:.3g} ms against {inference.median:.3g} ms of inference (median): "
                       "transfers are comparable to compute; keep data on the device or overlap copies with compute")
        pre, post = run.stat("preprocess"), run.stat("postprocess")
        if pre and post and pre.median + post.median >= inference.median:
            out.append(f"host pre/post-processing ({pre.median + post.median:.3g} ms) takes as long as inference "
                       f"({inference.median:.3g} ms): end-to-end throughput is bound by the host")
    return out


def _new_report(kind: str, settings: ProfileSettings, extra: dict) -> LatencyReport:
    from maskrt.runtime.environment import environment

    s = asdict(settings)
    s.update(extra)
    return LatencyReport(kind=kind, runs=[], environment=environment(), settings=s,
                         created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))


def profile(spec: RunnerSpec, batches: Sequence[int] = (1,), settings: Optional[ProfileSettings] = None,
            images_dir: Optional[str] = None, hook: Optional[ProgressHook] = None) -> LatencyReport:
    """Profile one model on one backend at each batch size (one run per batch size)."""
    settings = settings or ProfileSettings()
    settings.check()
    spec.check()
    images = load_images(images_dir)
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


def bench(specs: Sequence[RunnerSpec], batch: int = 1, settings: Optional[ProfileSettings] = None,
          images_dir: Optional[str] = None, hook: Optional[ProgressHook] = None, rounds_per_turn: int = 1) -> LatencyReport:
    """Several models/backends side by side at one batch size, measured in alternating order.

    Every row is opened and warmed up first; then the rows take turns (forward order on even rounds, reverse on
    odd ones), ``rounds_per_turn`` iterations per turn, until each row has its iterations (or the duration,
    counted per row, has passed). A row that fails to open or run is reported with its reason and the others go on.
    """
    settings = settings or ProfileSettings()
    settings.check()
    hook = hook or ProgressHook()
    images = load_images(images_dir)
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
            run.status, run.error = "failed", _one_line(e)
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
                        run.status, run.error = "failed", _one_line(e)
                        break
                    elapsed[id(run)] += time.perf_counter() - t0
                    run.figures["model"].times_ms.append(ms)
                    if enq is not None:
                        run.figures["enqueue"].times_ms.append(enq)
            live = [item for item in live if item[0].status == "ok"]
            round_no += 1
            hook.update(sum(len(r.figures["model"].times_ms) for r in report.runs if "model" in r.figures),
                        sum(elapsed.values()))
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


def _one_line(e: BaseException) -> str:
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    return first if isinstance(e, MaskrtError) else f"{type(e).__name__}: {first}"
