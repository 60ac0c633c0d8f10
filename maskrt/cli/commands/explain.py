"""``maskrt explain roi-align``: the interactive RoI Align / RoI Pool page (see :mod:`maskrt.explain.roi_align`)."""

from __future__ import annotations

import click


@click.group("explain", short_help="Interactive pages that show what maskrt's ops compute.")
def explain_group() -> None:
    """Interactive, self-contained pages that show what maskrt's ops compute, with their very numbers."""


@explain_group.command("roi-align", short_help="RoI Align and RoI Pool on real features, in the browser.", epilog="""\b
Examples:
  maskrt explain roi-align --out explain.html
  maskrt explain roi-align --image street.jpg --box 40,60,200,180 --stride 16 --out explain.html
  maskrt explain roi-align --mode max --sampling-ratio 0 --aligned --luminance --out explain.html""")
@click.option("--image", type=click.Path(dir_okay=False), help="Image to show (default: a generated shapes scene).")
@click.option("--box", help="x1,y1,x2,y2 in the pixels of the image as the model sees it (default: around an object).")
@click.option("--stride", type=click.Choice(["4", "8", "16", "32"]), default="8", show_default=True,
              help="FPN level (feature-map stride) to pool from.")
@click.option("--output-size", type=int, default=7, show_default=True, help="Output bins per side.")
@click.option("--sampling-ratio", type=int, default=2, show_default=True, help="Sample points per bin and axis; 0 "
              "for adaptive (ceil(roi size / output size)).")
@click.option("--mode", type=click.Choice(["avg", "max"]), default="avg", show_default=True)
@click.option("--aligned/--no-aligned", default=False, show_default=True, help="Half-pixel offset (aligned=True).")
@click.option("--luminance", is_flag=True, help="Pool the image's luminance instead of the shapes model's FPN features.")
@click.option("--seed", type=int, default=0, show_default=True, help="Scene of the default image.")
@click.option("--out", "out_path", required=True, type=click.Path(dir_okay=False), help="The HTML file to write.")
def roi_align_cmd(image, box, stride, output_size, sampling_ratio, mode, aligned, luminance, seed, out_path):
    """Write one self-contained HTML page that shows RoI Pool and RoI Align on real features.

    The page draws the image under the feature-map grid with a box you drag and resize, RoI Pool's quantized bins
    with their lost and added areas, RoI Align's sampling points (hover one for its neighbours and bilinear weights),
    both outputs as numbers and heat maps, and an animated scan of anchors; its JavaScript computes RoI Align and RoI
    Pool live with the numbers of maskrt.ops.
    """
    from maskrt.explain.roi_align import write_page

    path = write_page(out_path, image=image, box=box, stride=int(stride), output_size=output_size,
                      sampling_ratio=sampling_ratio, mode=mode, aligned=aligned,
                      features="luminance" if luminance else "model", seed=seed)
    click.echo(f"wrote {path}: open it in a browser (it needs no network)")
