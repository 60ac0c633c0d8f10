"""Option groups shared by the commands, each defined once, and the few helpers that turn them into API calls.

* :func:`model_options`: what a checkpoint needs (``--arch``, ``--num-classes``, ``--input-size``);
* :func:`device_option`: ``--device cpu|cuda``;
* :func:`timing_options`: warm-up, iterations, duration and the images to rotate through;
* :func:`report_options`: ``--json``, ``--markdown``, ``--html``.

An option group is a decorator that adds its options in order; a command lists the groups it takes.
"""

from __future__ import annotations

import click

from maskrt.core.errors import MaskrtError


def _apply(options):
    def decorator(f):
        for option in reversed(options):
            f = option(f)
        return f

    return decorator


def model_options(f):
    """--arch, --num-classes, --input-size: what a checkpoint (or a preset) needs; ignored by nothing silently."""
    return _apply([
        click.option("--arch", help="Model preset, when MODEL is a checkpoint (see `maskrt models`)."),
        click.option("--num-classes", type=int, help="Classes including background, for checkpoints (default: the "
                     "preset's)."),
        click.option("--input-size", help="HxW, for checkpoints (default: the preset's export size)."),
    ])(f)


def device_option(f):
    return click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
                        help="Where the model runs.")(f)


def timing_options(f):
    return _apply([
        click.option("--warmup", "warmup_iterations", type=int, help="Warm-up iterations (default: --warmup-seconds)."),
        click.option("--warmup-seconds", type=float, default=1.0, show_default=True, help="Warm-up time."),
        click.option("--iterations", type=int, help="Measured iterations (default: --duration)."),
        click.option("--duration", type=float, default=5.0, show_default=True,
                     help="Measure for this many seconds (and at least 10 iterations)."),
        click.option("--images", "images_dir", type=click.Path(), help="Folder of images to rotate through "
                     "(default: generated images of several sizes)."),
    ])(f)


def report_options(f):
    return _apply([
        click.option("--json", "json_out", type=click.Path(dir_okay=False),
                     help="Write the report (all raw times) as JSON."),
        click.option("--markdown", "md_out", type=click.Path(dir_okay=False), help="Write the tables as Markdown."),
        click.option("--html", "html_out", type=click.Path(dir_okay=False), help="Write a self-contained HTML report."),
    ])(f)


def checkpoint_kwargs(model_path, arch, num_classes, input_size) -> dict:
    """RunnerSpec keyword arguments from :func:`model_options`: only those given (so the preset's defaults apply to
    the others); refuses them for a model that is not a checkpoint, where they would be silently ignored."""
    from maskrt.core.onnxfile import model_kind
    from maskrt.core.parsing import parse_size

    kind = model_kind(model_path)
    if model_path and kind == "checkpoint":
        from maskrt.data.images import IMAGE_EXTENSIONS

        if str(model_path).lower().endswith(IMAGE_EXTENSIONS + (".json", ".txt", ".html")):
            raise MaskrtError(f"MODEL {model_path} is not a model: give an .onnx export, an .engine or a checkpoint "
                              "(.pth, .safetensors) first, then the other arguments")
    given = [name for name, value in (("--arch", arch), ("--num-classes", num_classes), ("--input-size", input_size))
             if value is not None]
    if model_path and kind != "checkpoint" and given:
        what = "an ONNX export" if kind == "onnx" else "a TensorRT engine"
        raise MaskrtError(f"{', '.join(given)} appl{'ies' if len(given) == 1 else 'y'} to checkpoints only; "
                          f"{model_path} is {what}, which carries its own (drop {' '.join(given)})")
    kwargs = {"arch": arch}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if input_size is not None:
        kwargs["input_size"] = parse_size(input_size)
    return kwargs


def settings_from(warmup_iterations, warmup_seconds, iterations, duration, stages=False, layers=False):
    """A checked :class:`maskrt.profiling.measure.ProfileSettings` from :func:`timing_options`."""
    import warnings

    from maskrt.core.errors import MaskrtWarning
    from maskrt.profiling.measure import ProfileSettings

    ctx = click.get_current_context(silent=True)
    if ctx is not None:
        for count, count_option, time_name, time_option in ((iterations, "--iterations", "duration", "--duration"),
                                                            (warmup_iterations, "--warmup", "warmup_seconds",
                                                             "--warmup-seconds")):
            source = ctx.get_parameter_source(time_name)
            if count is not None and source is not None and source.name != "DEFAULT":
                warnings.warn(MaskrtWarning(f"{time_option} is ignored: {count_option} {count} sets the count"),
                              stacklevel=2)
    settings = ProfileSettings(warmup_iterations=warmup_iterations, warmup_seconds=warmup_seconds,
                               iterations=iterations, duration=duration, stages=stages, layers=layers)
    settings.check()
    return settings


def check_report_outputs(*paths, inputs=()) -> None:
    """Refuse unwritable report paths (or one that is an input) before anything is measured."""
    from maskrt.core.fileio import check_output_file

    for option, path in zip(("--json", "--markdown", "--html"), paths):
        check_output_file(path, option, inputs=inputs)


def write_reports(report, json_out, md_out, html_out) -> None:
    """Print the report and write the files asked for."""
    from maskrt.profiling.render import print_report, write_html, write_markdown
    from maskrt.profiling.report import write_json

    print_report(report)
    for path, writer in ((json_out, write_json), (md_out, write_markdown), (html_out, write_html)):
        if path:
            writer(report, path)
            click.echo(f"wrote {path}")


class RichProgress:
    """A :class:`maskrt.profiling.measure.ProgressHook` shown as a rich progress bar (iterations, or seconds when
    measuring by duration)."""

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


def with_progress(fn):
    """Call ``fn(hook)`` with a :class:`RichProgress` on a transient progress bar."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:.0f}/{task.total:.0f}"),
                  TimeElapsedColumn(), transient=True) as progress:
        return fn(RichProgress(progress))
