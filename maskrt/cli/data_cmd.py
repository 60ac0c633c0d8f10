"""``maskrt data shapes``: write the synthetic shapes dataset in COCO format."""

from __future__ import annotations

import click

from maskrt.cli.main import cli
from maskrt.errors import MaskrtError


@cli.group("data")
def data_group() -> None:
    """Generate datasets."""


@data_group.command("shapes")
@click.option("--count", type=int, required=True, help="Number of images (scenes 0 .. N-1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Dataset seed; scene i depends only on (seed, i).")
@click.option("--out", "out_dir", required=True, type=click.Path(), help="Output folder (images/ and annotations.json).")
def shapes_cmd(count, seed, out_dir):
    """Write synthetic circles, rectangles, triangles and stars as a COCO instance-segmentation dataset."""
    import json

    from maskrt.data.shapes import CLASSES, write_coco

    if count < 1:
        raise MaskrtError(f"--count must be >= 1, got {count}")
    if seed < 0:
        raise MaskrtError(f"--seed must be >= 0, got {seed}")
    path = write_coco(out_dir, count, seed, progress=count >= 50)
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    per_class = {name: 0 for name in CLASSES}
    for ann in data["annotations"]:
        per_class[CLASSES[ann["category_id"] - 1]] += 1
    click.echo(f"wrote {len(data['images'])} images and {len(data['annotations'])} instances to {path}")
    click.echo("  " + ", ".join(f"{name} {n}" for name, n in per_class.items()))
