"""A latency report as one self-contained HTML page: inline CSS, inline SVG plots (latency CDF, stage bars,
throughput against batch size), a few lines of inline script for sortable tables, nothing fetched."""

from __future__ import annotations

import html
import math
from typing import Optional

from maskrt.core.fileio import atomic_write
from maskrt.core.formatting import milliseconds
from maskrt.profiling.render.tables import (
    STAGE_LABELS,
    all_warnings,
    environment_rows,
    layer_tables,
    ratio_note,
    settings_line,
    stage_rows,
    summary_rows,
)
from maskrt.profiling.report import FIGURES, STAGES, LatencyReport
from maskrt.profiling.stats import DEFINITIONS

_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")

def html_table(header: list[str], rows: list[list[str]], sortable: bool = True) -> str:
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
                        f'fill="{_COLORS[k]}"><title>{STAGE_LABELS[stage]}: {v:.3f} ms</title></rect>')
            x0 += v * scale
        body.append(f'<text x="{x0 + 4:.1f}" y="{y0 + 15}" font-size="11">'
                    f'{milliseconds(sum(run.stat(s).median for s in STAGES))} ms</text>')
    ly = 20 + len(runs) * (bar + 12) + 8
    for k, stage in enumerate(STAGES):
        body.append(f'<rect x="{ml + k * 95}" y="{ly}" width="12" height="12" fill="{_COLORS[k]}"/>'
                    f'<text x="{ml + k * 95 + 16}" y="{ly + 10}" font-size="11">{STAGE_LABELS[stage]}</text>')
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
             lead_sections, "<h2>Model latency</h2>", html_table(header, rows)]
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
        parts += ["<h2>Predictor stages</h2>", html_table(sh, srows), svg_stages(report)]
    for title, lh, lrows in layer_tables(report):
        parts += [f"<h2>{html.escape(title)}</h2>", html_table(lh, lrows)]
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
    return atomic_write(path, to_html(report, title))
