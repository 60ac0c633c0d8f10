"""``maskrt eval``: COCO bbox and segm AP of any model maskrt can run."""

from __future__ import annotations

import click

from maskrt.cli.main import cli
from maskrt.errors import MaskrtError

SCHEMA = "maskrt.eval-report"
SCHEMA_VERSION = 1


def spec_size_kwargs(num_classes, input_size) -> dict:
    """The checkpoint options for RunnerSpec: only those given, so that RunnerSpec's (or the preset's) defaults
    apply to the others."""
    from maskrt.export.onnx_export import parse_size

    kw = {}
    if num_classes is not None:
        kw["num_classes"] = num_classes
    if input_size is not None:
        kw["input_size"] = parse_size(input_size)
    return kw


def _percent(value) -> str:
    return "—" if value is None else f"{100.0 * value:.1f}"


def print_metrics(result, title: str, console=None) -> None:
    """The metrics as a table: a row per IoU type, AP columns in percent ("—": no objects of that size)."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    from maskrt.data.evaluate import METRICS

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


def write_json(result, path: str, extra: dict) -> None:
    """The result as JSON, written to a temporary name beside ``path`` and renamed (no partial files)."""
    import json
    import os
    import tempfile

    folder = os.path.dirname(os.path.abspath(path))
    data = {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **extra, **result.to_dict()}
    fd, tmp = tempfile.mkstemp(prefix=".maskrt-eval-", suffix=".json.tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


@cli.command("eval")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.option("--coco", "annotations", required=True, type=click.Path(dir_okay=False),
              help="COCO instances annotation file (JSON).")
@click.option("--images", "images_dir", required=True, type=click.Path(file_okay=False),
              help="Folder holding the images the annotation file names.")
@click.option("--backend", default="auto", show_default=True,
              help="auto (from MODEL's file type), torch or onnxruntime.")
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--arch", help="Model preset, when MODEL is a checkpoint (see `maskrt models`).")
@click.option("--num-classes", type=int, default=None, help="Classes including background, for checkpoints.")
@click.option("--input-size", default=None, help="HxW, for checkpoints.")
@click.option("--batch", type=int, default=1, show_default=True, help="Images per inference call.")
@click.option("--limit", type=int, help="Evaluate only the first N images of the annotation file.")
@click.option("--score-threshold", type=float, default=0.0, show_default=True,
              help="Drop detections below this score (on top of the model's own threshold).")
@click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write metrics, model and dataset as JSON.")
def eval_cmd(model_path, annotations, images_dir, backend, device, arch, num_classes, input_size, batch, limit,
             score_threshold, json_out):
    """COCO bbox and segm AP of MODEL (.onnx export, or a checkpoint with --arch) on a COCO dataset.

    Model classes are matched to the dataset's categories by name. Prints AP, AP50, AP75 and AP for small,
    medium and large objects (in percent) and writes them with --json (as fractions in [0, 1]).
    """
    import datetime as _dt
    import os

    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from maskrt.data.evaluate import evaluate, load_coco
    from maskrt.runtime.profiling import RunnerSpec

    if batch < 1:
        raise MaskrtError(f"--batch must be >= 1, got {batch}")
    if not 0.0 <= score_threshold <= 1.0:
        raise MaskrtError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    if json_out:
        folder = os.path.dirname(os.path.abspath(json_out))
        if not os.path.isdir(folder):
            raise MaskrtError(f"cannot write {json_out}: folder {folder} does not exist")
    spec = RunnerSpec(model_path, backend=backend, device=device, arch=arch, **spec_size_kwargs(num_classes, input_size))
    spec.check()
    dataset = load_coco(annotations, images_dir, limit)
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      transient=True) as progress:
            task = progress.add_task("evaluating", total=dataset.num_images)
            result = evaluate(spec, dataset, batch=batch, score_threshold=score_threshold,
                              progress=lambda done, total: progress.update(task, completed=done))
    except KeyboardInterrupt:
        click.echo("interrupted: nothing was scored", err=True)
        raise SystemExit(130) from None
    shown = f"{dataset.num_images} of {dataset.num_listed}" if dataset.num_images < dataset.num_listed else dataset.num_images
    click.echo(f"{annotations}: {shown} images, {dataset.num_annotations} objects, {len(dataset.categories)} categories")
    print_metrics(result, f"maskrt eval: {spec.name()}")
    if json_out:
        from maskrt.runtime.environment import environment

        created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        write_json(result, json_out, {"created": created, "environment": environment()})
        click.echo(f"wrote {json_out}")
