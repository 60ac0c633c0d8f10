"""``maskrt profile`` and ``maskrt bench``: latency, FPS and reports for any model maskrt can run."""

from __future__ import annotations

import click

from maskrt.cli.main import cli
from maskrt.errors import MaskrtError

TORCH_VARIANTS = {
    "torch": ("fp32", False),
    "torch-fp16": ("fp16", False),
    "torch-cudagraph": ("fp32", True),
    "torch-fp16-cudagraph": ("fp16", True),
}
BACKENDS = (*TORCH_VARIANTS, "onnxruntime", "onnxruntime-trt", "tensorrt")


def _timing_options(f):
    options = [
        click.option("--warmup", "warmup_iterations", type=int, help="Warm-up iterations (default: --warmup-seconds)."),
        click.option("--warmup-seconds", type=float, default=1.0, show_default=True, help="Warm-up time."),
        click.option("--iterations", type=int, help="Measured iterations (default: --duration)."),
        click.option("--duration", type=float, default=5.0, show_default=True,
                     help="Measure for this many seconds (and at least 10 iterations)."),
        click.option("--images", "images_dir", type=click.Path(), help="Folder of images to rotate through "
                     "(default: generated images of several sizes)."),
        click.option("--arch", help="Model preset, for checkpoints (see `maskrt models`)."),
        click.option("--num-classes", type=int, help="Classes, for checkpoints (default: the preset's)."),
        click.option("--input-size", help="HxW, for checkpoints (default: the preset's export size)."),
        click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True),
        click.option("--json", "json_out", type=click.Path(dir_okay=False), help="Write the report (all raw times) as JSON."),
        click.option("--markdown", "md_out", type=click.Path(dir_okay=False), help="Write the tables as Markdown."),
        click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Write a self-contained HTML report."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _settings(warmup_iterations, warmup_seconds, iterations, duration, stages=False, layers=False):
    from maskrt.runtime.profiling import ProfileSettings

    s = ProfileSettings(warmup_iterations=warmup_iterations, warmup_seconds=warmup_seconds, iterations=iterations,
                        duration=duration, stages=stages, layers=layers)
    s.check()
    return s


class _RichHook:
    """Shows a measurement as a rich progress bar (iterations, or seconds when measuring by duration)."""

    def __init__(self, progress):
        self.progress = progress
        self.task = None
        self.by_time = False

    def begin(self, label, total, seconds):
        self.by_time = total is None
        self.task = self.progress.add_task(label, total=seconds if self.by_time else total)

    def update(self, count, elapsed):
        self.progress.update(self.task, completed=elapsed if self.by_time else count)

    def end(self):
        if self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def _with_progress(fn):
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                  TimeElapsedColumn(), transient=True) as progress:
        return fn(_RichHook(progress))


def _check_outputs(*paths):
    import os

    for p in paths:
        if p:
            folder = os.path.dirname(os.path.abspath(p))
            if not os.path.isdir(folder):
                raise MaskrtError(f"cannot write {p}: folder {folder} does not exist")


def _load_dataset(annotations, images_dir, limit):
    import os

    if annotations is None:
        if images_dir or limit is not None:
            raise MaskrtError("--dataset-images and --dataset-limit need --dataset ANNOTATIONS.json")
        return None
    from maskrt.data.evaluate import load_coco

    images_dir = images_dir or os.path.join(os.path.dirname(os.path.abspath(annotations)), "images")
    return load_coco(annotations, images_dir, limit)


def _fill_accuracy(report, specs, dataset) -> None:
    """COCO AP of every row that ran, through the same RunnerSpec (so the numbers are `maskrt eval`'s)."""
    import os

    from maskrt.data.evaluate import evaluate

    for run, spec in zip(report.runs, specs):
        if run.status not in ("ok", "interrupted"):
            continue
        click.echo(f"evaluating {run.label} on {dataset.num_images} images ...", err=True)
        try:
            result = evaluate(spec, dataset, batch=run.batch)
        except MaskrtError as e:
            run.notes.append(f"accuracy not measured: {e}")
            click.echo(f"{run.label}: accuracy not measured: {e}", err=True)
            continue
        run.accuracy = {"bbox_ap": (result.metrics.get("bbox") or {}).get("AP"),
                        "segm_ap": (result.metrics.get("segm") or {}).get("AP"),
                        "metrics": result.metrics, "dataset": os.path.abspath(dataset.path),
                        "num_images": result.num_images}


def _emit(report, json_out, md_out, html_out):
    from maskrt.runtime import reports

    reports.print_report(report)
    for path, writer in ((json_out, reports.write_json), (md_out, reports.write_markdown), (html_out, reports.write_html)):
        if path:
            writer(report, path)
            click.echo(f"wrote {path}")
    if report.interrupted:
        click.echo("interrupted: the report above holds what was measured before Ctrl-C", err=True)
        raise SystemExit(130)


@cli.command("profile")
@click.argument("model_path", metavar="[MODEL]", required=False, type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "onnxruntime-trt", "tensorrt"]),
              default="auto", show_default=True,
              help="auto: tensorrt for .engine files, onnxruntime for .onnx files, torch for checkpoints; "
                   "onnxruntime-trt: ONNX Runtime's TensorRT execution provider.")
@click.option("--batch", "batches", default="1", show_default=True, help="Batch sizes to sweep, e.g. 1,2,4,8.")
@click.option("--stages", is_flag=True, help="Also time each Predictor stage (pre/post-processing, copies).")
@click.option("--layers", is_flag=True, help="TensorRT engines: also a per-layer time table (TensorRT's profiler).")
@click.option("--fp16", is_flag=True, help="torch: half-precision network (CUDA); onnxruntime-trt: fp16 kernels; "
              "for ONNX Runtime export with --precision fp16, for engines build from such an export.")
@click.option("--cuda-graph", is_flag=True, help="torch or tensorrt on CUDA: replay the work from CUDA graphs.")
@click.option("--trt-cache", type=click.Path(file_okay=False), help="onnxruntime-trt: folder for its engine and "
              "timing caches (later sessions skip the build).")
@click.option("--random-weights", is_flag=True, help="Time --arch with random weights (no checkpoint needed).")
@_timing_options
def profile_cmd(model_path, backend, batches, stages, layers, fp16, cuda_graph, trt_cache, random_weights,
                warmup_iterations, warmup_seconds, iterations, duration, images_dir, arch, num_classes, input_size,
                device, json_out, md_out, html_out):
    """Latency and FPS of MODEL (.engine, .onnx export, or a checkpoint with --arch) on one backend.

    Times the runner alone (model latency) at each batch size, and with --stages every stage of the Predictor.
    Prints a table and writes --json / --markdown / --html reports. Ctrl-C stops and reports what was measured.
    """
    from maskrt.export.onnx_export import parse_size
    from maskrt.runtime.profiling import RunnerSpec, parse_batches, profile

    settings = _settings(warmup_iterations, warmup_seconds, iterations, duration, stages, layers)
    sizes = parse_batches(batches)
    if model_path is None and not arch:
        raise MaskrtError("give MODEL (.engine, .onnx or checkpoint), or --arch (with --random-weights unless the "
                          "preset ships weights)")
    if model_path and random_weights:
        raise MaskrtError("--random-weights replaces MODEL; pass one or the other")
    spec = RunnerSpec(model_path, backend=backend, device=device, precision="fp16" if fp16 else "fp32",
                      cuda_graph=cuda_graph, arch=arch, num_classes=num_classes,
                      input_size=parse_size(input_size) if input_size else None,
                      random_weights=random_weights)
    resolved = spec.resolved_backend()
    if layers and resolved != "tensorrt":
        raise MaskrtError(f"--layers needs a TensorRT engine (.engine): the {resolved} backend has no per-layer profile")
    if trt_cache and resolved != "onnxruntime-trt":
        raise MaskrtError("--trt-cache applies to --backend onnxruntime-trt only")
    if fp16 and resolved == "onnxruntime":
        raise MaskrtError("--fp16 applies to the torch and onnxruntime-trt backends; for ONNX Runtime export with "
                          "`maskrt export --precision fp16` and profile that file")
    if fp16 and resolved == "tensorrt":
        raise MaskrtError("--fp16 does not apply to an engine: its precision was fixed by `maskrt build`")
    if resolved == "onnxruntime-trt":
        from maskrt.runtime.runners import ort_trt_provider_options

        spec.ort_trt_options = ort_trt_provider_options(fp16=fp16, cache_dir=trt_cache)
    spec.check()
    _check_outputs(json_out, md_out, html_out)
    report = _with_progress(lambda hook: profile(spec, sizes, settings, images_dir, hook))
    _emit(report, json_out, md_out, html_out)


@cli.command("bench")
@click.argument("models", metavar="MODEL...", nargs=-1, required=True)
@click.option("--backends", default=None, help=f"Comma-separated, from {', '.join(BACKENDS)}; default: every one "
              "that applies (torch variants for checkpoints, onnxruntime for .onnx, tensorrt for engines; fp16 and CUDA graphs on cuda).")
@click.option("--batch", type=int, default=1, show_default=True, help="Batch size for every row.")
@click.option("--dataset", "dataset_json", type=click.Path(dir_okay=False),
              help="COCO annotations: every row is also evaluated (bbox and segm AP columns).")
@click.option("--dataset-images", type=click.Path(file_okay=False),
              help="The dataset's image folder (default: images/ next to the annotations).")
@click.option("--dataset-limit", type=int, help="Evaluate on the first N images only.")
@_timing_options
def bench_cmd(models, backends, batch, dataset_json, dataset_images, dataset_limit, warmup_iterations, warmup_seconds,
              iterations, duration, images_dir, arch, num_classes, input_size, device, json_out, md_out, html_out):
    """Several MODELs and backends side by side, measured in alternating order.

    One table: model, backend, precision, status, file size, latency median and p99, FPS, ratio to the first row
    and, with --dataset, COCO bbox and segm AP per row (`maskrt eval`'s numbers). A row that fails says why and the
    others go on.
    """
    from maskrt.export.onnx_export import parse_size
    from maskrt.runtime.profiling import RunnerSpec, bench

    settings = _settings(warmup_iterations, warmup_seconds, iterations, duration)
    if batch < 1:
        raise MaskrtError(f"--batch must be >= 1, got {batch}")
    wanted = None
    if backends:
        wanted = [b.strip() for b in backends.split(",") if b.strip()]
        unknown = [b for b in wanted if b not in BACKENDS]
        if unknown:
            raise MaskrtError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(BACKENDS)}")
    size = parse_size(input_size) if input_size else None
    specs = []
    from maskrt.export.engine import is_engine_path
    from maskrt.runtime.runners import ort_trt_provider_options

    for path in models:
        kind = "engine" if is_engine_path(path) else "onnx" if path.lower().endswith(".onnx") else "checkpoint"
        applies = {"engine": ("tensorrt",), "onnx": ("onnxruntime", "onnxruntime-trt")}.get(kind, tuple(TORCH_VARIANTS))
        if wanted is not None:
            names = [b for b in wanted if b in applies]
        elif kind == "engine":
            names = ["tensorrt"]
        elif kind == "onnx":
            names = ["onnxruntime"]
        else:
            names = ["torch", "torch-fp16", "torch-fp16-cudagraph"] if device == "cuda" else ["torch"]
        for name in names:
            precision, graph = TORCH_VARIANTS.get(name, ("fp32", False))
            backend = name if name in ("onnxruntime", "onnxruntime-trt", "tensorrt") else "torch"
            options = ort_trt_provider_options() if name == "onnxruntime-trt" else {}
            specs.append(RunnerSpec(path, backend=backend, device=device, precision=precision, cuda_graph=graph,
                                    arch=arch, num_classes=num_classes, input_size=size, ort_trt_options=options))
    if not specs:
        raise MaskrtError(f"none of --backends {backends} applies to the models given (torch variants take "
                          "checkpoints, onnxruntime and onnxruntime-trt take .onnx files, tensorrt takes engines)")
    _check_outputs(json_out, md_out, html_out)
    dataset = _load_dataset(dataset_json, dataset_images, dataset_limit)  # refuse a bad dataset before timing
    report = _with_progress(lambda hook: bench(specs, batch, settings, images_dir, hook))
    if dataset is not None:
        _fill_accuracy(report, specs, dataset)
    _emit(report, json_out, md_out, html_out)
    if all(r.status == "failed" for r in report.runs):
        raise MaskrtError("every row failed (reasons in the table)")
