"""``maskrt detect``: the eager model on one image (a quick look at a checkpoint, no export)."""

from __future__ import annotations

import click

from maskrt.core.errors import MaskrtError


@click.command("detect", short_help="Eager model on one image (no export).", epilog="""\b
Examples:
  maskrt detect
  maskrt detect --image street.jpg --arch maskrcnn_resnet50_fpn --weights maskrcnn_resnet50_fpn_coco.pth
  maskrt detect --arch maskrcnn_resnet18_fpn --random-weights --size 480x640""")
@click.option("--arch", default="shapes", show_default=True, help="Model preset (see `maskrt models`).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint (.pth state_dict or .safetensors); "
              "default: the preset's embedded weights.")
@click.option("--random-weights", is_flag=True, help="Use randomly initialised weights (detections are meaningless).")
@click.option("--num-classes", type=int, help="Classes including background (default: the preset's).")
@click.option("--image", "image_path", type=click.Path(dir_okay=False), help="Image file; default: a generated image.")
@click.option("--size", default="480x640", show_default=True, help="HxW of the generated image.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the generated image and random weights.")
@click.option("--min-size", type=int, help="Resize short side to this (default: the preset's, 800 for COCO).")
@click.option("--max-size", type=int, help="Cap on the long side after resize (default: the preset's, 1333 for COCO).")
@click.option("--score-threshold", type=float, default=0.05, show_default=True, help="Keep detections above this score.")
@click.option("--top", type=int, default=10, show_default=True, help="Print at most this many detections.")
def detect_cmd(arch, weights, random_weights, num_classes, image_path, size, seed, min_size, max_size, score_threshold,
               top):
    """Run the eager model on one image and print its detections."""
    import time

    import torch

    from maskrt.core.parsing import parse_size
    from maskrt.data.images import read_image, synthetic_image
    from maskrt.model.meta import class_names_of
    from maskrt.model.presets import load_model

    if top < 0:
        raise MaskrtError(f"--top must be >= 0, got {top}")
    if not 0.0 <= score_threshold < 1.0:
        raise MaskrtError(f"--score-threshold must be in [0, 1), got {score_threshold}")
    if image_path:
        import warnings

        from maskrt.core.errors import MaskrtWarning

        ctx = click.get_current_context()
        ignored = [f"--{name}" for name in ("size", "seed") if ctx.get_parameter_source(name).name != "DEFAULT"
                   and not (name == "seed" and random_weights)]  # the seed also seeds random weights
        if ignored:
            warnings.warn(MaskrtWarning(f"{' and '.join(ignored)} {'is' if len(ignored) == 1 else 'are'} ignored with "
                                        "--image (they shape the generated image)"), stacklevel=1)
        image = read_image(image_path)
        source = image_path
    else:
        h, w = parse_size(size, "--size", minimum=1)
        image = synthetic_image(h, w, seed)
        source = f"generated {h}x{w} image (seed {seed})"
    limits = {k: v for k, v in (("min_size", min_size), ("max_size", max_size)) if v is not None}
    model = load_model(arch, weights, random_weights, num_classes, seed, box_score_thresh=score_threshold, **limits)
    start = time.perf_counter()
    with torch.inference_mode():
        result = model([image.float() / 255.0])[0]
    elapsed = time.perf_counter() - start
    n = result["boxes"].shape[0]
    names = class_names_of(model)
    origin = "random weights" if random_weights else weights or "embedded weights"
    click.echo(f"{arch} ({origin}) on {source}: {n} detections in {elapsed:.2f} s")
    if n:
        click.echo(f"{'#':>3} {'label':>10} {'score':>7}  {'x1':>7} {'y1':>7} {'x2':>7} {'y2':>7}  {'mask px':>7}")
    for i in range(min(n, top)):
        x1, y1, x2, y2 = result["boxes"][i].tolist()
        area = int((result["masks"][i, 0] > 0.5).sum())
        click.echo(
            f"{i:>3} {names[int(result['labels'][i])]:>10} {float(result['scores'][i]):>7.4f}  "
            f"{x1:>7.1f} {y1:>7.1f} {x2:>7.1f} {y2:>7.1f}  {area:>7d}"
        )
