"""``maskrt`` command-line entry point.

Only click is imported at module level so that ``maskrt --help`` works without torch; each command imports
what it needs. A :class:`maskrt.MaskrtError` is printed as one line and exits with status 2.
"""

from __future__ import annotations

import sys

import click

from maskrt import __version__
from maskrt.errors import MaskrtError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MaskrtError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="maskrt")
def cli() -> None:
    """maskrt: Mask R-CNN from PyTorch to ONNX and TensorRT, with one runtime that reports latency and FPS."""


@cli.command("models")
def models_cmd() -> None:
    """List the model presets that --arch accepts."""
    from maskrt.model.presets import PRESETS

    for name in sorted(PRESETS):
        click.echo(f"{name:28s} {PRESETS[name].description}")


@cli.command("detect")
@click.option("--arch", default="maskrcnn_resnet50_fpn", show_default=True, help="Model preset (see `maskrt models`).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint (.pth state_dict or .safetensors).")
@click.option("--random-weights", is_flag=True, help="Use randomly initialised weights (detections are meaningless).")
@click.option("--num-classes", type=int, default=91, show_default=True, help="Classes including background.")
@click.option("--image", "image_path", type=click.Path(dir_okay=False), help="Image file; default: a generated image.")
@click.option("--size", default="480x640", show_default=True, help="HxW of the generated image.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the generated image and random weights.")
@click.option("--min-size", type=int, default=800, show_default=True, help="Resize short side to this.")
@click.option("--max-size", type=int, default=1333, show_default=True, help="Cap on the long side after resize.")
@click.option("--score-threshold", type=float, default=0.05, show_default=True, help="Keep detections above this score.")
@click.option("--top", type=int, default=10, show_default=True, help="Print at most this many detections.")
def detect_cmd(arch, weights, random_weights, num_classes, image_path, size, seed, min_size, max_size, score_threshold, top):
    """Run the eager model on one image and print its detections."""
    import time

    import torch

    from maskrt.data.images import read_image, synthetic_image
    from maskrt.model import build, load_checkpoint

    if bool(weights) == bool(random_weights):
        raise MaskrtError("pass exactly one of --weights FILE or --random-weights")
    if top < 0:
        raise MaskrtError(f"--top must be >= 0, got {top}")
    torch.manual_seed(seed)
    model = build(arch, num_classes=num_classes, min_size=min_size, max_size=max_size, box_score_thresh=score_threshold)
    if weights:
        load_checkpoint(weights, model)
    model.eval()
    if image_path:
        image = read_image(image_path)
        source = image_path
    else:
        h, w = _parse_hw(size, "--size")
        image = synthetic_image(h, w, seed)
        source = f"generated {h}x{w} image (seed {seed})"
    start = time.perf_counter()
    with torch.inference_mode():
        result = model([image.float() / 255.0])[0]
    elapsed = time.perf_counter() - start
    n = result["boxes"].shape[0]
    click.echo(f"{arch} ({'random weights' if random_weights else weights}) on {source}: {n} detections in {elapsed:.2f} s")
    if n:
        click.echo(f"{'#':>3} {'label':>5} {'score':>7}  {'x1':>7} {'y1':>7} {'x2':>7} {'y2':>7}  {'mask px':>7}")
    for i in range(min(n, top)):
        x1, y1, x2, y2 = result["boxes"][i].tolist()
        area = int((result["masks"][i, 0] > 0.5).sum())
        click.echo(
            f"{i:>3} {int(result['labels'][i]):>5} {float(result['scores'][i]):>7.4f}  "
            f"{x1:>7.1f} {y1:>7.1f} {x2:>7.1f} {y2:>7.1f}  {area:>7d}"
        )


def _parse_hw(text: str, option: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise MaskrtError(f"{option} must look like HxW (e.g. 480x640), got {text!r}") from None
    if h < 1 or w < 1:
        raise MaskrtError(f"{option} must be positive, got {text!r}")
    return h, w


def main() -> None:
    cli(prog_name="maskrt")


if __name__ == "__main__":
    main()
