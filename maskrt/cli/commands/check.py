"""``maskrt check``: static TensorRT conformance of any ONNX file (see :mod:`maskrt.check`)."""

from __future__ import annotations

import click


@click.command("check", short_help="TensorRT conformance of an ONNX file, without TensorRT.", epilog="""\b
Examples:
  maskrt check model.onnx
  maskrt check model_fp16.onnx --tensorrt 11 --max-batch 16
  maskrt check model.onnx --json > check.json""")
@click.argument("model_path", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@click.option("--tensorrt", "versions", default=None, help="TensorRT release whose rules apply: 10, 11, 10.16 or "
              "11.1 (default: both 10.16 and 11.1).")
@click.option("--max-batch", type=int, default=8, show_default=True, help="The largest batch the engine will take "
              "(limits are evaluated there).")
@click.option("--strongly-typed/--weakly-typed", default=None, help="TensorRT 10: check the strong-typing rules "
              "(default: for fp16 and Q/DQ graphs, which maskrt builds strongly typed; 11.x is always strongly typed).")
@click.option("--all", "show_all", is_flag=True, help="Also list the informational findings.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (rules with their sources included).")
def check_cmd(model_path, versions, max_batch, strongly_typed, show_all, as_json):
    """Check an ONNX file against TensorRT's ONNX parser and layer limits, without TensorRT.

    Every rule cites the NVIDIA header, importer or table it comes from. The table lists each finding: the rule, the
    node, what TensorRT would do and the fix. Exits 1 when there are errors, 0 otherwise (warnings included).
    """
    from maskrt.check import check_model

    report = check_model(model_path, tensorrt=versions, max_batch=max_batch, strongly_typed=strongly_typed)
    if as_json:
        click.echo(report.to_json())
    else:
        print_check(report, show_all)
    if not report.ok:
        raise SystemExit(1)


def print_check(report, show_all: bool = False, console=None) -> None:
    """The findings as a table, then the summary line."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
    rows = report.rows(include_info=show_all)
    if rows:
        table = Table(title=escape(f"maskrt check: {report.path}"), show_lines=True)
        for name, width in (("severity", 8), ("rule", 14), ("node", 28), ("what TensorRT would do", 60), ("fix", 40)):
            table.add_column(name, overflow="fold", min_width=min(width, 12), max_width=width)
        for row in rows:
            table.add_row(*(escape(c) for c in row))
        console.print(table)
    hidden = sum(1 for f in report.findings if f.severity == "info") if not show_all else 0
    console.print(report.summary() + (f" ({hidden} note(s): --all shows them)" if hidden else ""), markup=False,
                  highlight=False)
