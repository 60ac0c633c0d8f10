"""The latency report format: what was measured, every raw time, and what each figure includes.

A :class:`LatencyReport` holds the environment, the settings and one :class:`Run` per model, backend and batch
size; each run holds :class:`Figure` s of raw times. ``to_dict`` / ``from_dict`` are the JSON schema
(``maskrt.latency-report`` version 1, documented in docs/profiling.md); renderers in
:mod:`maskrt.profiling.render` are views of it. Statistics follow :mod:`maskrt.profiling.stats`.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass, field
from typing import Optional

from maskrt.core.errors import MaskrtError
from maskrt.core.fileio import atomic_write
from maskrt.profiling.stats import DEFINITIONS, PERCENTILES, Stats, summarize

SCHEMA = "maskrt.latency-report"
SCHEMA_VERSION = 1

FIGURES = {
    "model": "the runner alone: execute() on a batch already on the device (network, in-graph NMS and output "
             "formatting); no image pre/post-processing, no host/device copies. On CUDA, the span between events "
             "recorded before and after execute(): trtexec's GPU compute time only when execute() never waits for "
             "the device and enqueues ahead of it; otherwise GPU idle gaps are included",
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

CV_WARNING = 0.025  # coefficient of variation above which a run is called noisy


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
    def from_dict(cls, d: dict) -> Figure:
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
    # CUDA only: {"ms_per_execute", "executions", "source"}, the kernels' time beside the model figure's event span
    gpu_busy: Optional[dict] = None

    def stat(self, figure: str = "model") -> Optional[Stats]:
        f = self.figures.get(figure)
        return f.stats if f is not None else None

    def to_dict(self) -> dict:
        d = asdict(self)
        d["figures"] = {k: v.to_dict() for k, v in self.figures.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict) -> Run:
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
    def from_dict(cls, d: dict) -> LatencyReport:
        if d.get("schema") != SCHEMA:
            raise MaskrtError(f"not a maskrt latency report (schema {d.get('schema')!r}, expected {SCHEMA!r})")
        if int(d.get("schema_version", 0)) > SCHEMA_VERSION:
            raise MaskrtError(f"latency report schema version {d['schema_version']} is newer than this maskrt reads "
                              f"({SCHEMA_VERSION}); upgrade maskrt")
        return cls(kind=d["kind"], runs=[Run.from_dict(r) for r in d["runs"]], environment=d.get("environment", {}),
                   settings=d.get("settings", {}), created=d.get("created", ""),
                   interrupted=bool(d.get("interrupted", False)), schema=d["schema"],
                   schema_version=int(d["schema_version"]))


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
    busy = (run.gpu_busy or {}).get("ms_per_execute")
    launch_bound = enqueue is not None and enqueue.median >= 0.8 * model.median
    if busy is not None and busy < 0.8 * model.median and not launch_bound:
        out.append(f"the GPU is busy {busy:.3g} ms of the {model.median:.3g} ms event span (median; sum of kernel "
                   f"times): {1 - busy / model.median:.0%} of it the GPU waits (for launches, host syncs inside "
                   "execute(), or copies)")
    if launch_bound:
        hint = ("CUDA graphs are on, yet launches still dominate" if run.cuda_graph
                else "try --cuda-graph to replay the network's kernels from a CUDA graph")
        out.append(f"host overhead: enqueueing takes {enqueue.median:.3g} ms of the {model.median:.3g} ms event span "
                   f"(median); the GPU waits for the host (launches, or host syncs inside execute()): {hint}")
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


def write_json(report: LatencyReport, path: str) -> str:
    """The report itself as JSON (every raw time), written atomically."""
    return atomic_write(path, json.dumps(report.to_dict(), indent=1) + "\n")


def read_json(path: str) -> LatencyReport:
    """A report written by :func:`write_json`; MaskrtError for an unreadable file or another schema."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise MaskrtError(f"cannot read latency report {path}: {e}") from None
    if not isinstance(data, dict):
        raise MaskrtError(f"{path} is not a maskrt latency report")
    return LatencyReport.from_dict(data)
