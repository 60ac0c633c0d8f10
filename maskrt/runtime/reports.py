"""Renderers of a :class:`maskrt.runtime.profiling.LatencyReport`: terminal (rich), JSON, Markdown, HTML.

The JSON form is the report itself (``LatencyReport.to_dict``, documented in docs/profiling.md) with every raw
time; the other forms are views of it. The HTML page is one self-contained file: inline CSS, inline SVG plots,
a few lines of inline script for sortable tables, nothing fetched.
"""

from __future__ import annotations

import html
import json
import math
import os
from typing import Optional

from maskrt.errors import MaskrtError
from maskrt.runtime.profiling import FIGURES, STAGES, LatencyReport, Run
from maskrt.runtime.stats import DEFINITIONS

_STAGE_LABELS = {"preprocess": "preprocess", "h2d": "H2D copy", "inference": "inference", "d2h": "D2H copy",
                 "postprocess": "postprocess", "end_to_end": "end to end"}
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")


# -- shared table rows ---------------------------------------------------------------------------------------------
def _ms(v: Optional[float]) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _num(v: Optional[float], digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _size(n: Optional[int]) -> str:
    if n is None:
        return "—"
    return f"{n / 2**20:.1f} MB"


def _status(run: Run) -> str:
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
            rows.append([run.model.get("name", run.label), _variant(run), run.precision, _status(run),
                         _size(run.model.get("size_bytes")), _ms(s and s.median), _ms(s and s.p99),
                         _num(s and s.fps), _num(s and s.throughput), _num(ratio, 3),
                         _num(100.0 * acc["bbox_ap"], 1) if acc.get("bbox_ap") is not None else "—",
                         _num(100.0 * acc["segm_ap"], 1) if acc.get("segm_ap") is not None else "—"])
        return header, rows
    header = ["model", "backend", "device", "precision", "batch", "status", "median ms", "mean ± std ms", "p90 ms",
              "p95 ms", "p99 ms", "per-image ms", "throughput img/s", "FPS", "peak RSS MB", "peak GPU MB"]
    rows = []
    for run in report.runs:
        s = run.stat("model")
        rows.append([run.model.get("name", run.label), _variant(run), run.device, run.precision, str(run.batch),
                     _status(run), _ms(s and s.median), f"{_ms(s.mean)} ± {_ms(s.std)}" if s else "—",
                     _ms(s and s.p90), _ms(s and s.p95), _ms(s and s.p99), _ms(s and s.median / run.batch),
                     _num(s and s.throughput), _num(s and s.fps), _num(run.memory.get("peak_rss_mb"), 0),
                     _num(run.memory.get("peak_gpu_mb"), 0)])
    return header, rows


def ratio_note(report: LatencyReport) -> str:
    """What the bench table's ratio column divides by."""
    ref = _reference(report)
    if report.kind != "bench" or ref is None:
        return ""
    return f"ratio: median latency divided by that of {ref.label} (below 1 is faster)"


def stage_rows(report: LatencyReport) -> tuple[list[str], list[list[str]]]:
    """Median of each Predictor stage per run (runs without --stages are left out)."""
    header = ["model", "backend", "batch"] + [f"{_STAGE_LABELS[s]} ms" for s in (*STAGES, "end_to_end")] + [
        "end-to-end img/s"]
    rows = []
    for run in report.runs:
        if run.stat("end_to_end") is None:
            continue
        e2e = run.stat("end_to_end")
        rows.append([run.model.get("name", run.label), _variant(run), str(run.batch)]
                    + [_ms(run.stat(s).median) for s in (*STAGES, "end_to_end")] + [_num(e2e.throughput)])
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
        rows = [[str(i + 1), str(r["name"]), _ms(r["mean_ms"]), f"{r['percent']:.1f}"] for i, r in
                enumerate(layers[:top])]
        rest = layers[top:]
        if rest:
            rows.append(["", f"({len(rest)} other layers)", _ms(sum(r["mean_ms"] for r in rest)),
                         f"{sum(r['percent'] for r in rest):.1f}"])
        total = sum(r["mean_ms"] for r in layers)
        rows.append(["", "total (sum of layer means)", _ms(total), "100.0"])
        out.append((f"{run.label} (batch {run.batch}): per-layer time, TensorRT profiler, "
                    f"{layers[0].get('runs', '?')} runs", ["#", "layer", "mean ms", "% of total"], rows))
    return out


def _variant(run: Run) -> str:
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
                     + (f", {_size(m.get('size_bytes'))}, sha256 {m['sha256']}" if m.get("sha256") else "")))
    return rows


def settings_line(report: LatencyReport) -> str:
    s = report.settings
    warm = f"{s['warmup_iterations']} iterations" if s.get("warmup_iterations") is not None else f"{s.get('warmup_seconds')} s"
    meas = (f"{s['iterations']} iterations" if s.get("iterations") is not None
            else f"{s.get('duration')} s (at least {s.get('min_iterations')} iterations)")
    order = " in alternating order" if report.kind == "bench" else ""
    return (f"warm-up {warm}; measured {meas}{order}; inputs rotate among {s.get('distinct_batches')} different "
            f"batches of {s.get('images')} images")


# -- terminal ------------------------------------------------------------------------------------------------------
def _print_table(console, title: str, header: list[str], rows: list[list[str]], text_columns=()) -> None:
    from rich.markup import escape
    from rich.table import Table

    table = Table(title=title)
    for i, h in enumerate(header):
        widest = max([len(h)] + [len(r[i]) for r in rows])
        if h in text_columns:
            table.add_column(h, justify="left", min_width=min(widest, 28), overflow="fold")
        else:
            table.add_column(h, justify="right", no_wrap=True, min_width=widest)
    for row in rows:
        table.add_row(*(escape(c) for c in row))
    console.print(table)


def terminal_rows(report: LatencyReport) -> tuple[list[str], list[list[str]]]:
    """A narrower table for the terminal: backend, device and precision in one column; status only when some
    row is not ok."""
    header, rows = summary_rows(report)
    if report.kind == "bench":
        keep = ["model", "backend", "precision", "status", "file size", "median ms", "p99 ms", "FPS", "ratio", "bbox AP",
                "segm AP"]
    else:
        keep = ["model", "backend", "batch", "status", "median ms", "p90 ms", "p99 ms", "img/s", "FPS", "peak RSS MB",
                "peak GPU MB"]
        for row in rows:
            row[1] = f"{row[1]} {row[2]} {row[3]}".replace(" (CPU) cpu", " cpu")
        header = [h.replace("throughput img/s", "img/s") for h in header]
        if not any(r.memory.get("peak_gpu_mb") for r in report.runs):
            keep.remove("peak GPU MB")
    if all(r.status == "ok" for r in report.runs):
        keep.remove("status")
    idx = [header.index(h) for h in keep]
    return [header[i] for i in idx], [[row[i] for i in idx] for row in rows]


def print_report(report: LatencyReport, console=None) -> None:
    from rich.console import Console
    from rich.markup import escape

    if console is None:
        console = Console()
        if not console.is_terminal:  # logs and pipes: do not squeeze the tables to 80 columns
            console = Console(width=200)
    header, rows = terminal_rows(report)
    _print_table(console, f"maskrt {report.kind}: model latency (ms)", [h.replace(" ms", "") for h in header], rows,
                 text_columns=("model", "backend", "precision", "status"))
    sh, srows = stage_rows(report)
    if srows:
        short = {"preprocess ms": "pre", "H2D copy ms": "H2D", "inference ms": "infer", "D2H copy ms": "D2H",
                 "postprocess ms": "post", "end to end ms": "e2e", "end-to-end img/s": "e2e img/s"}
        _print_table(console, "Predictor stages (median ms)", [short.get(h, h) for h in sh], srows,
                     text_columns=("model", "backend"))
    for title, lh, lrows in layer_tables(report):
        _print_table(console, title, lh, lrows, text_columns=("layer",))
    if ratio_note(report):
        console.print(f"[dim]{escape(ratio_note(report))}[/dim]")
    timing = sorted({r.timing for r in report.runs if r.figures})
    console.print(f"[dim]{escape(settings_line(report))}; timing: {', '.join(timing)}; percentiles: "
                  f"{DEFINITIONS['percentile']}[/dim]")
    for w in all_warnings(report):
        console.print(f"[yellow]warning:[/yellow] {escape(w)}")


# -- files ---------------------------------------------------------------------------------------------------------
def _write_atomic(path: str, text: str) -> str:
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MaskrtError(f"cannot write {path}: folder {folder} does not exist")
    from maskrt.fileio import write_text_atomic

    return write_text_atomic(path, text)


def write_json(report: LatencyReport, path: str) -> str:
    return _write_atomic(path, json.dumps(report.to_dict(), indent=1) + "\n")


def read_json(path: str) -> LatencyReport:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        raise MaskrtError(f"cannot read latency report {path}: {e}") from None
    return LatencyReport.from_dict(data)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    def esc(c: str) -> str:
        return str(c).replace("|", "\\|")

    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: LatencyReport) -> str:
    header, rows = summary_rows(report)
    parts = [f"## maskrt {report.kind}: model latency", "", _md_table(header, rows), ""]
    if ratio_note(report):
        parts += [ratio_note(report) + ".", ""]
    sh, srows = stage_rows(report)
    if srows:
        parts += ["### Predictor stages (median ms)", "", _md_table(sh, srows), ""]
    for title, lh, lrows in layer_tables(report):
        parts += [f"### {title}", "", _md_table(lh, lrows), ""]
    parts += [f"{settings_line(report)}. Percentiles: {DEFINITIONS['percentile']}.", ""]
    warnings = all_warnings(report)
    if warnings:
        parts += ["### Warnings", ""] + [f"- {w}" for w in warnings] + [""]
    parts += ["### Environment", "", _md_table(["", ""], [list(r) for r in environment_rows(report)]), ""]
    return "\n".join(parts)


def write_markdown(report: LatencyReport, path: str) -> str:
    return _write_atomic(path, to_markdown(report))


# -- HTML ----------------------------------------------------------------------------------------------------------
def _html_table(header: list[str], rows: list[list[str]], sortable: bool = True) -> str:
    cls = ' class="sortable"' if sortable else ""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table{cls}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / n
    mag = 10 ** math.floor(math.log10(raw))
    step = min((m * mag for m in (1, 2, 5, 10) if m * mag >= raw), default=raw)
    start = math.floor(lo / step) * step
    ticks, v = [], start
    while v <= hi + step * 1e-9:
        if v >= lo - step * 1e-9:
            ticks.append(round(v, 10))
        v += step
    return ticks


def _svg_frame(width: int, height: int, title: str, body: str) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" aria-label="{html.escape(title)}"><title>{html.escape(title)}</title>{body}</svg>')


def svg_cdf(report: LatencyReport, figure: str = "model") -> str:
    """Cumulative distribution of each run's latency (x: ms, y: fraction of iterations at or below)."""
    series = [(r, sorted(r.figures[figure].times_ms)) for r in report.runs if r.stat(figure) is not None]
    if not series:
        return ""
    w, h, ml, mr, mt, mb = 720, 320, 60, 20, 20, 45
    lo = min(s[0] for _, s in series)
    hi = max(s[-1] for _, s in series)
    pad = (hi - lo) * 0.05 or hi * 0.05 or 1.0
    lo, hi = max(lo - pad, 0.0), hi + pad

    def x(v):
        return ml + (v - lo) / (hi - lo) * (w - ml - mr)

    def y(f):
        return mt + (1 - f) * (h - mt - mb)

    body = [f'<rect x="{ml}" y="{mt}" width="{w - ml - mr}" height="{h - mt - mb}" fill="none" stroke="#999"/>']
    for t in _nice_ticks(lo, hi):
        body.append(f'<line x1="{x(t):.1f}" y1="{h - mb}" x2="{x(t):.1f}" y2="{h - mb + 5}" stroke="#666"/>'
                    f'<text x="{x(t):.1f}" y="{h - mb + 18}" font-size="11" text-anchor="middle">{t:g}</text>')
    for f in (0, 0.25, 0.5, 0.75, 1.0):
        body.append(f'<line x1="{ml - 5}" y1="{y(f):.1f}" x2="{w - mr}" y2="{y(f):.1f}" stroke="#eee"/>'
                    f'<text x="{ml - 8}" y="{y(f) + 4:.1f}" font-size="11" text-anchor="end">{f:g}</text>')
    body.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 8}" font-size="12" text-anchor="middle">latency (ms)</text>')
    body.append(f'<text x="14" y="{(mt + h - mb) / 2}" font-size="12" text-anchor="middle" '
                f'transform="rotate(-90 14 {(mt + h - mb) / 2})">fraction of iterations</text>')
    for i, (run, times) in enumerate(series):
        n = len(times)
        pts = [f"{x(times[0]):.1f},{y(0):.1f}"]
        for k, t in enumerate(times):
            pts.append(f"{x(t):.1f},{y(k / n):.1f}")
            pts.append(f"{x(t):.1f},{y((k + 1) / n):.1f}")
        color = _COLORS[i % len(_COLORS)]
        label = html.escape(f"{run.label} b{run.batch}")
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="1.8" points="{" ".join(pts)}">'
                    f'<title>{label}</title></polyline>')
        body.append(f'<rect x="{ml + 10}" y="{mt + 8 + 16 * i}" width="12" height="3" fill="{color}"/>'
                    f'<text x="{ml + 27}" y="{mt + 13 + 16 * i}" font-size="11">{label}</text>')
    return _svg_frame(w, h, f"latency CDF ({figure})", "".join(body))


def svg_stages(report: LatencyReport) -> str:
    """Stacked horizontal bars of the median of each Predictor stage, per run."""
    runs = [r for r in report.runs if r.stat("end_to_end") is not None]
    if not runs:
        return ""
    w, ml, mr, bar = 760, 230, 80, 22
    h = 40 + len(runs) * (bar + 12) + 30
    total = max(sum(r.stat(s).median for s in STAGES) for r in runs) or 1.0
    scale = (w - ml - mr) / total
    body = []
    for i, run in enumerate(runs):
        y0 = 20 + i * (bar + 12)
        body.append(f'<text x="{ml - 8}" y="{y0 + 15}" font-size="11" text-anchor="end">'
                    f'{html.escape(run.label[:34])} b{run.batch}</text>')
        x0 = ml
        for k, stage in enumerate(STAGES):
            v = run.stat(stage).median
            body.append(f'<rect x="{x0:.1f}" y="{y0}" width="{max(v * scale, 0):.1f}" height="{bar}" '
                        f'fill="{_COLORS[k]}"><title>{_STAGE_LABELS[stage]}: {v:.3f} ms</title></rect>')
            x0 += v * scale
        body.append(f'<text x="{x0 + 4:.1f}" y="{y0 + 15}" font-size="11">'
                    f'{_ms(sum(run.stat(s).median for s in STAGES))} ms</text>')
    ly = 20 + len(runs) * (bar + 12) + 8
    for k, stage in enumerate(STAGES):
        body.append(f'<rect x="{ml + k * 95}" y="{ly}" width="12" height="12" fill="{_COLORS[k]}"/>'
                    f'<text x="{ml + k * 95 + 16}" y="{ly + 10}" font-size="11">{_STAGE_LABELS[stage]}</text>')
    return _svg_frame(w, h, "Predictor stages (median ms)", "".join(body))


def svg_throughput(report: LatencyReport) -> str:
    """Throughput (images/s) against batch size, one line per model/backend."""
    groups: dict = {}
    for r in report.runs:
        s = r.stat("model")
        if s is not None:
            groups.setdefault(r.label, []).append((r.batch, s.throughput))
    if not any(len(v) > 1 for v in groups.values()):
        return ""
    w, h, ml, mr, mt, mb = 720, 300, 60, 20, 20, 45
    batches = sorted({b for v in groups.values() for b, _ in v})
    top = max(t for v in groups.values() for _, t in v) * 1.1 or 1.0

    def x(b):
        i = batches.index(b)
        return ml + (i + 0.5) / len(batches) * (w - ml - mr)

    def y(t):
        return mt + (1 - t / top) * (h - mt - mb)

    body = [f'<rect x="{ml}" y="{mt}" width="{w - ml - mr}" height="{h - mt - mb}" fill="none" stroke="#999"/>']
    for b in batches:
        body.append(f'<text x="{x(b):.1f}" y="{h - mb + 18}" font-size="11" text-anchor="middle">{b}</text>')
    for t in _nice_ticks(0, top):
        body.append(f'<line x1="{ml - 5}" y1="{y(t):.1f}" x2="{w - mr}" y2="{y(t):.1f}" stroke="#eee"/>'
                    f'<text x="{ml - 8}" y="{y(t) + 4:.1f}" font-size="11" text-anchor="end">{t:g}</text>')
    body.append(f'<text x="{(ml + w - mr) / 2}" y="{h - 8}" font-size="12" text-anchor="middle">batch size</text>')
    body.append(f'<text x="14" y="{(mt + h - mb) / 2}" font-size="12" text-anchor="middle" '
                f'transform="rotate(-90 14 {(mt + h - mb) / 2})">images / s</text>')
    for i, (label, pts) in enumerate(groups.items()):
        color = _COLORS[i % len(_COLORS)]
        pts = sorted(pts)
        body.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" '
                    f'points="{" ".join(f"{x(b):.1f},{y(t):.1f}" for b, t in pts)}"/>')
        for b, t in pts:
            body.append(f'<circle cx="{x(b):.1f}" cy="{y(t):.1f}" r="3.5" fill="{color}">'
                        f'<title>{html.escape(label)} batch {b}: {t:.1f} img/s</title></circle>')
        body.append(f'<text x="{ml + 10}" y="{mt + 14 + 16 * i}" font-size="11" fill="{color}">{html.escape(label)}</text>')
    return _svg_frame(w, h, "throughput vs batch size", "".join(body))


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:13px;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 8px;text-align:right}
th{background:#f4f4f4;cursor:pointer}td:first-child,th:first-child{text-align:left}
.warn{color:#8a5a00}.note{color:#555;font-size:13px}dl{display:grid;grid-template-columns:max-content auto;gap:2px 16px;font-size:13px}
dt{font-weight:600}code{font-size:12px}
"""

_SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th, col) {
  th.addEventListener('click', function () {
    var body = th.closest('table').tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    var asc = th.dataset.asc !== 'true';
    th.dataset.asc = asc;
    rows.sort(function (a, b) {
      var x = a.cells[col].textContent, y = b.cells[col].textContent;
      var nx = parseFloat(x), ny = parseFloat(y);
      var c = (isNaN(nx) || isNaN(ny)) ? x.localeCompare(y) : nx - ny;
      return asc ? c : -c;
    });
    rows.forEach(function (r) { body.appendChild(r); });
  });
});
"""


def to_html(report: LatencyReport, title: Optional[str] = None, extra_sections: str = "", lead_sections: str = "") -> str:
    """The report as one self-contained page; ``lead_sections`` (HTML) go before the latency tables and
    ``extra_sections`` after them."""
    title = title or f"maskrt {report.kind} report"
    header, rows = summary_rows(report)
    parts = [f"<h1>{html.escape(title)}</h1>",
             f'<p class="note">{html.escape(report.created)} · {html.escape(settings_line(report))}</p>',
             lead_sections, "<h2>Model latency</h2>", _html_table(header, rows)]
    if ratio_note(report):
        parts.append(f'<p class="note">{html.escape(ratio_note(report))}</p>')
    warnings = all_warnings(report)
    if warnings:
        parts += ["<h2>Warnings</h2>", "<ul>" + "".join(f'<li class="warn">{html.escape(w)}</li>' for w in warnings) + "</ul>"]
    cdf = svg_cdf(report)
    if cdf:
        parts += ["<h2>Latency distribution</h2>", '<p class="note">Cumulative distribution of the model latency of '
                  "every measured iteration.</p>", cdf]
    sh, srows = stage_rows(report)
    if srows:
        parts += ["<h2>Predictor stages</h2>", _html_table(sh, srows), svg_stages(report)]
    for title, lh, lrows in layer_tables(report):
        parts += [f"<h2>{html.escape(title)}</h2>", _html_table(lh, lrows)]
    tp = svg_throughput(report)
    if tp:
        parts += ["<h2>Throughput vs batch size</h2>", tp]
    parts.append(extra_sections)
    parts += ["<h2>Environment</h2>", "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>"
                                                       for k, v in environment_rows(report)) + "</dl>"]
    used = sorted({k for r in report.runs for k in r.figures})
    parts += ["<h2>Definitions</h2>", "<dl>" + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(FIGURES[k])}</dd>"
                                                       for k in used if k in FIGURES)
              + "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in DEFINITIONS.items()) + "</dl>",
              '<p class="note">Every raw time is in the JSON report (<code>--json</code>).</p>']
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>\n" + "\n".join(parts)
            + f"\n<script>{_SCRIPT}</script>\n</body></html>\n")


def write_html(report: LatencyReport, path: str, title: Optional[str] = None) -> str:
    return _write_atomic(path, to_html(report, title))
