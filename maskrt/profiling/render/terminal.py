"""A latency report as rich tables in the terminal."""

from __future__ import annotations

from maskrt.profiling.render.tables import (
    all_warnings,
    layer_tables,
    ratio_note,
    settings_line,
    stage_rows,
    summary_rows,
)
from maskrt.profiling.report import LatencyReport
from maskrt.profiling.stats import DEFINITIONS


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
        keep = ["model", "backend", "precision", "status", "file size", "median ms", "GPU busy ms", "p99 ms", "FPS",
                "ratio", "bbox AP", "segm AP"]
    else:
        keep = ["model", "backend", "batch", "status", "median ms", "GPU busy ms", "p90 ms", "p99 ms", "img/s", "FPS",
                "peak RSS MB", "peak GPU MB"]
        for row in rows:
            row[1] = f"{row[1]} {row[2]} {row[3]}".replace(" (CPU) cpu", " cpu")
        header = [h.replace("throughput img/s", "img/s") for h in header]
        if not any(r.memory.get("peak_gpu_mb") for r in report.runs):
            keep.remove("peak GPU MB")
    if all(r.status == "ok" for r in report.runs):
        keep.remove("status")
    keep = [h for h in keep if h != "GPU busy ms" or h in header]  # only when some run measured it
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
