"""``maskrt data shapes``: the synthetic shapes dataset in COCO format."""

from __future__ import annotations

import click

from maskrt.core.errors import MaskrtError


@click.group("data", short_help="Generate the synthetic shapes dataset.")
def data_group() -> None:
    """Generate datasets (maskrt's synthetic shapes, in COCO format)."""


@data_group.command("shapes", short_help="Shapes scenes as a COCO dataset.", epilog="""\b
Examples:
  maskrt data shapes --count 200 --seed 7 --out shapes-val
  maskrt data shapes --count 4000 --seed 1 --out shapes-train""")
@click.option("--count", type=int, required=True, help="Number of images (scenes 0 .. N-1).")
@click.option("--seed", type=int, default=0, show_default=True, help="Dataset seed; scene i depends only on (seed, i).")
@click.option("--out", "out_dir", required=True, type=click.Path(),
              help="Output folder (images/ and annotations.json).")
def shapes_cmd(count, seed, out_dir):
    """Write synthetic circles, rectangles, triangles and stars as a COCO instance-segmentation dataset."""
    from maskrt.data.shapes import CLASSES, write_coco

    if count < 1:
        raise MaskrtError(f"--count must be >= 1, got {count}")
    if seed < 0:
        raise MaskrtError(f"--seed must be >= 0, got {seed}")
    path = write_coco(out_dir, count, seed, progress=count >= 50)
    import json

    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    per_class = dict.fromkeys(CLASSES, 0)
    for ann in data["annotations"]:
        per_class[CLASSES[ann["category_id"] - 1]] += 1
    click.echo(f"wrote {len(data['images'])} images and {len(data['annotations'])} instances to {path}")
    click.echo("  " + ", ".join(f"{name} {n}" for name, n in per_class.items()))
