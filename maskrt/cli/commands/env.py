"""``maskrt env``: what this machine can run (see :mod:`maskrt.inventory`)."""

from __future__ import annotations

import json

import click


@click.command("env", short_help="What this machine can run.", epilog="""\b
Examples:
  maskrt env
  maskrt env --json > env.json""")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for machines).")
def env_cmd(as_json):
    """Show what this machine can do: libraries, GPUs, TensorRT, plugin libraries, and which commands run."""
    from maskrt.inventory import capabilities, environment_report, report_lines

    report = environment_report()
    rows = capabilities(report)
    if as_json:
        click.echo(json.dumps({**report, "commands": rows}, indent=1))
        return
    for line in report_lines(report, rows):
        click.echo(line)
