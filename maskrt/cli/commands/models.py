"""``maskrt models``: the presets --arch accepts."""

from __future__ import annotations

import click


@click.command("models", short_help="List the model presets.", epilog="""\b
Examples:
  maskrt models
  maskrt export --arch shapes -o shapes.onnx""")
def models_cmd() -> None:
    """List the model presets that --arch accepts."""
    from maskrt.model.presets import PRESETS

    for name in sorted(PRESETS):
        weights = " (embedded weights)" if PRESETS[name].weights_path() else ""
        click.echo(f"{name:28s} {PRESETS[name].description}{weights}")
