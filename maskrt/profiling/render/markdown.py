"""A latency report as Markdown tables."""

from __future__ import annotations

from maskrt.core.fileio import atomic_write
from maskrt.profiling.render.tables import (
    all_warnings,
    environment_rows,
    layer_tables,
    ratio_note,
    settings_line,
    stage_rows,
    summary_rows,
)
from maskrt.profiling.report import LatencyReport
from maskrt.profiling.stats import DEFINITIONS


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
    return atomic_write(path, to_markdown(report))
