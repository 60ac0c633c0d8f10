"""The rows every rendering of a latency report shares: the summary table, Predictor stages, per-layer times,
environment, settings and warnings (as text cells)."""

from __future__ import annotations

from typing import Optional

from maskrt.core.formatting import human_bytes, milliseconds, number
from maskrt.profiling.report import STAGES, LatencyReport, Run

STAGE_LABELS = {"preprocess": "preprocess", "h2d": "H2D copy", "inference": "inference", "d2h": "D2H copy",
                 "postprocess": "postprocess", "end_to_end": "end to end"}

# -- shared table rows ---------------------------------------------------------------------------------------------
def file_size(n: Optional[int]) -> str:
    return "—" if n is None else human_bytes(n)


def status_text(run: Run) -> str:
    return run.status if run.status != "failed" else f"failed: {run.error}"


def _reference(report: LatencyReport) -> Optional[Run]:
    for run in report.runs:
        if run.stat("model") is not None:
            return run
    return None


def summary_rows(report: LatencyReport) -> tuple[list[str], list[list[str]]]:
    """The main table: one row per run."""
    if report.kind == "bench":
        ref = _reference(report)
        header = ["model", "backend", "precision", "status", "file size", "median ms", "p99 ms", "FPS",
                  "img/s", "ratio", "bbox AP", "segm AP"]
        rows = []
        for run in report.runs:
            s = run.stat("model")
            ratio = s.median / ref.stat("model").median if s and ref else None
            acc = run.accuracy or {}
            rows.append([run.model.get("name", run.label), variant_text(run), run.precision, status_text(run),
                         file_size(run.model.get("size_bytes")), milliseconds(s and s.median), milliseconds(s and s.p99),
                         number(s and s.fps), number(s and s.throughput), number(ratio, 3),
                         number(100.0 * acc["bbox_ap"], 1) if acc.get("bbox_ap") is not None else "—",
                         number(100.0 * acc["segm_ap"], 1) if acc.get("segm_ap") is not None else "—"])
        return _with_gpu_busy(report, header, rows)
    header = ["model", "backend", "device", "precision", "batch", "status", "median ms", "mean ± std ms", "p90 ms",
              "p95 ms", "p99 ms", "per-image ms", "throughput img/s", "FPS", "peak RSS MB", "peak GPU MB"]
    rows = []
    for run in report.runs:
        s = run.stat("model")
        rows.append([run.model.get("name", run.label), variant_text(run), run.device, run.precision, str(run.batch),
                     status_text(run), milliseconds(s and s.median), f"{milliseconds(s.mean)} ± {milliseconds(s.std)}" if s else "—",
                     milliseconds(s and s.p90), milliseconds(s and s.p95), milliseconds(s and s.p99), milliseconds(s and s.median / run.batch),
                     number(s and s.throughput), number(s and s.fps), number(run.memory.get("peak_rss_mb"), 0),
                     number(run.memory.get("peak_gpu_mb"), 0)])
    return _with_gpu_busy(report, header, rows)


def _with_gpu_busy(report: LatencyReport, header: list[str], rows: list[list[str]]):
    """A "GPU busy ms" column after the median when some run measured it (CPU-only reports: no column of dashes)."""
    if not any(r.gpu_busy for r in report.runs):
        return header, rows
    column = header.index("median ms") + 1
    busy = [milliseconds((r.gpu_busy or {}).get("ms_per_execute")) for r in report.runs]
    return header[:column] + ["GPU busy ms"] + header[column:], [
        row[:column] + [b] + row[column:] for row, b in zip(rows, busy)]


def ratio_note(report: LatencyReport) -> str:
    """What the bench table's ratio column divides by."""
    ref = _reference(report)
    if report.kind != "bench" or ref is None:
        return ""
    return f"ratio: median latency divided by that of {ref.label} (below 1 is faster)"


def stage_rows(report: LatencyReport) -> tuple[list[str], list[list[str]]]:
    """Median of each Predictor stage per run (runs without --stages are left out)."""
    header = ["model", "backend", "batch"] + [f"{STAGE_LABELS[s]} ms" for s in (*STAGES, "end_to_end")] + [
        "end-to-end img/s"]
    rows = []
    for run in report.runs:
        if run.stat("end_to_end") is None:
            continue
        e2e = run.stat("end_to_end")
        rows.append([run.model.get("name", run.label), variant_text(run), str(run.batch)]
                    + [milliseconds(run.stat(s).median) for s in (*STAGES, "end_to_end")] + [number(e2e.throughput)])
    return header, rows


LAYER_ROWS = 25


def layer_tables(report: LatencyReport, top: int = LAYER_ROWS) -> list[tuple[str, list[str], list[list[str]]]]:
    """One (title, header, rows) per run with a per-layer profile: the ``top`` slowest layers by mean time, then
    one row for the rest."""
    out = []
    for run in report.runs:
        layers = run.layers or []
        if not layers:
            continue
        rows = [[str(i + 1), str(r["name"]), milliseconds(r["mean_ms"]), f"{r['percent']:.1f}"] for i, r in
                enumerate(layers[:top])]
        rest = layers[top:]
        if rest:
            rows.append(["", f"({len(rest)} other layers)", milliseconds(sum(r["mean_ms"] for r in rest)),
                         f"{sum(r['percent'] for r in rest):.1f}"])
        total = sum(r["mean_ms"] for r in layers)
        rows.append(["", "total (sum of layer means)", milliseconds(total), "100.0"])
        out.append((f"{run.label} (batch {run.batch}): per-layer time, TensorRT profiler, "
                    f"{layers[0].get('runs', '?')} runs", ["#", "layer", "mean ms", "% of total"], rows))
    return out


def variant_text(run: Run) -> str:
    text = run.backend
    if run.providers:
        text += f" ({run.providers[0].replace('ExecutionProvider', '')})"
    if run.cuda_graph:
        text += " + CUDA graph"
    return text


def all_warnings(report: LatencyReport) -> list[str]:
    out = []
    for run in report.runs:
        out.extend(f"{run.label} (batch {run.batch}): {w}" for w in run.warnings)
    if report.interrupted:
        out.append("interrupted (Ctrl-C): the report holds what was measured before")
    return out


def environment_rows(report: LatencyReport) -> list[tuple[str, str]]:
    env = report.environment
    gpus = env.get("gpus") or []
    rows = [
        ("CPU", f"{env.get('cpu', '?')} ({env.get('cpu_cores', '?')} usable cores)"),
        ("GPU", "; ".join(f"{g['name']} (sm {g['compute_capability']}, {g['memory_gb']} GB)" for g in gpus) or "none"),
        ("NVIDIA driver", env.get("nvidia_driver") or "—"),
        ("OS / Python", f"{env.get('os', '?')} / {env.get('python', '?')}"),
        ("torch", f"{env.get('torch') or 'not installed'}" + (f" (CUDA {env['torch_cuda']})" if env.get("torch_cuda") else "")),
        ("onnxruntime", f"{env.get('onnxruntime') or 'not installed'}; providers: "
                        f"{', '.join(env.get('onnxruntime_providers') or []) or '—'}"),
        ("tensorrt", env.get("tensorrt") or "not installed"),
        ("maskrt", env.get("maskrt") or "?"),
        ("input size", "x".join(str(v) for v in report.settings.get("input_size", [])) or "per model"),
    ]
    seen = set()
    for run in report.runs:
        m = run.model
        key = m.get("path") or m.get("name")
        if key in seen or not (m.get("path") or m.get("random_weights")):
            continue
        seen.add(key)
        rows.append((f"model {m.get('name', run.label)}",
                     f"{m.get('path') or 'random weights (' + str(m.get('arch')) + ')'}"
                     + (f", {file_size(m.get('size_bytes'))}, sha256 {m['sha256']}" if m.get("sha256") else "")))
    return rows


def settings_line(report: LatencyReport) -> str:
    s = report.settings
    warm = f"{s['warmup_iterations']} iterations" if s.get("warmup_iterations") is not None else f"{s.get('warmup_seconds')} s"
    meas = (f"{s['iterations']} iterations" if s.get("iterations") is not None
            else f"{s.get('duration')} s (at least {s.get('min_iterations')} iterations)")
    order = " in alternating order" if report.kind == "bench" else ""
    return (f"warm-up {warm}; measured {meas}{order}; inputs rotate among {s.get('distinct_batches')} different "
            f"batches of {s.get('images')} images")
