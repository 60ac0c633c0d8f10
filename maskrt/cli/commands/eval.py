"""``maskrt eval``: COCO bbox and segm AP of any model maskrt can run."""

from __future__ import annotations

import click

from maskrt.cli.options import checkpoint_kwargs, device_option, model_options
from maskrt.core.errors import MaskrtError


def _percent(value) -> str:
    return "—" if value is None else f"{100.0 * value:.1f}"


def print_metrics(result, title: str, console=None) -> None:
    """The metrics as a table: a row per IoU type, AP columns in percent ("—": no objects of that size)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from maskrt.evaluation.coco import METRICS

    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=200)
    table = Table(title=escape(title))
    table.add_column("type")
    for name in METRICS:
        table.add_column(name, justify="right")
    for iou_type, values in result.metrics.items():
        table.add_row(iou_type, *(_percent(values.get(name)) for name in METRICS))
    console.print(table)
    rate = result.images_per_second
    console.print(f"{result.num_images} images, {result.num_detections} detections; predicting {result.seconds:.1f} s"
                  f"{f' ({rate:.1f} img/s)' if rate else ''}, scoring {result.eval_seconds:.1f} s; AP in percent",
                  markup=False, highlight=False)


@click.command("eval", short_help="COCO bbox and segm AP on a dataset.", epilog="""\b
Examples:
  maskrt data shapes --count 200 --seed 7 --out val && maskrt eval shapes.onnx --coco val/annotations.json
  maskrt eval model.onnx --coco instances_val2017.json --images val2017/ --json eval.json
  maskrt eval model.pth --arch maskrcnn_resnet50_fpn --coco val.json --limit 100""")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--coco", "annotations", required=True, type=click.Path(dir_okay=False),
              help="COCO instances annotation file (JSON).")
@click.option("--images", "images_dir", type=click.Path(file_okay=False),
              help="Folder holding the images the annotation file names (default: images/ next to it).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "onnxruntime-trt", "tensorrt"]),
              default="auto", show_default=True, help="auto: from MODEL's file type.")
@device_option
@model_options
@click.option("--batch", type=int, default=None, help="Images per inference call (default: the model's own batch, "
              "1 for a dynamic-batch model).")
@click.option("--limit", type=int, help="Evaluate only the first N images of the annotation file.")
@click.option("--score-threshold", type=float, default=0.0, show_default=True,
              help="Drop detections below this score (on top of the model's own threshold).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write metrics, model and dataset as JSON.")
def eval_cmd(model_path, annotations, images_dir, backend, device, arch, num_classes, input_size, batch, limit,
             score_threshold, json_out):
    """Measure the COCO bbox and segm AP of MODEL on a COCO dataset.

    MODEL is an .onnx export, an .engine, or a checkpoint with --arch. Model classes are matched to the dataset's
    categories by name. Prints AP, AP50, AP75 and AP for small, medium and large objects (in percent) and writes them
    with --json (as fractions in [0, 1]).
    """
    import datetime as _dt
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from maskrt.backends.select import RunnerSpec
    from maskrt.core.environment import environment
    from maskrt.core.fileio import check_output_file
    from maskrt.evaluation.coco import evaluate, load_coco, write_eval_json

    if batch is not None and batch < 1:
        raise MaskrtError(f"--batch must be >= 1, got {batch}")
    if not 0.0 <= score_threshold <= 1.0:
        raise MaskrtError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    check_output_file(json_out, "--json", inputs=[model_path, annotations])
    spec = RunnerSpec(model_path, backend=backend, device=device,
                      **checkpoint_kwargs(model_path, arch, num_classes, input_size))
    spec.check()
    images_dir = images_dir or os.path.join(os.path.dirname(os.path.abspath(annotations)), "images")
    dataset = load_coco(annotations, images_dir, limit)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  transient=True) as progress:
        task = progress.add_task("evaluating", total=dataset.num_images)
        try:
            result = evaluate(spec, dataset, batch=batch, score_threshold=score_threshold,
                              progress=lambda done, total: progress.update(task, completed=done))
        except KeyboardInterrupt:
            click.echo("interrupted: nothing was scored", err=True)
            raise
    shown = f"{dataset.num_images} of {dataset.num_listed}" if dataset.num_images < dataset.num_listed else dataset.num_images
    click.echo(f"{annotations}: {shown} images, {dataset.num_annotations} objects, {len(dataset.categories)} categories")
    print_metrics(result, f"maskrt eval: {spec.name()}")
    if json_out:
        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_eval_json(result, json_out, {"created": created, "environment": environment()})
        click.echo(f"wrote {json_out}")
