"""``maskrt demo``: export, verify, evaluate and time the embedded shapes model, offline (see :mod:`maskrt.demo`)."""

from __future__ import annotations

import click


@click.command("demo", short_help="The main job on the embedded model, offline.", epilog="""\b
Examples:
  maskrt demo
  maskrt demo --images 300 --out demo300
  maskrt demo --weights runs/shapes/model.safetensors""")
@click.option("--out", "out_dir", default="maskrt-demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the dataset, ONNX files, JSON and the HTML report.")
@click.option("--images", type=int, default=100, show_default=True, help="Held-out validation scenes to evaluate on.")
@click.option("--seed", type=int, default=1000, show_default=True, help="Seed of the validation scenes (not 1: training).")
@click.option("--iterations", type=int, default=20, show_default=True, help="Timed iterations per backend.")
@click.option("--warmup", type=int, default=3, show_default=True, help="Warm-up iterations per backend.")
@click.option("--draw", type=int, default=4, show_default=True, help="Images drawn with their predictions.")
@click.option("--weights", type=click.Path(dir_okay=False), help="Shapes weights to use instead of the embedded ones.")
@click.option("--calibration", type=int, default=16, show_default=True,
              help="INT8 calibration scenes (from the training data).")
def demo_cmd(out_dir, images, seed, iterations, warmup, draw, weights, calibration):
    """Run the main job offline on the embedded shapes model.

    It generates a held-out set, exports ONNX (fp32, fp16, TensorRT-target, int8), verifies each export against PyTorch,
    evaluates COCO AP on every backend that runs here, times them side by side, draws predictions, and writes
    everything into --out with an HTML report.
    """
    from rich.console import Console

    from maskrt.demo import DemoSettings, print_summary, run_demo

    settings = DemoSettings(out_dir=out_dir, images=images, seed=seed, iterations=iterations, warmup=warmup, draw=draw,
                            weights=weights, calibration=calibration)
    summary = run_demo(settings, Console(stderr=True))
    print_summary(summary, Console())
