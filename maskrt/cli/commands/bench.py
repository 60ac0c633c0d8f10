"""``maskrt bench``: several models and backends side by side."""

from __future__ import annotations

import click

from maskrt.cli.options import (
    check_report_outputs,
    checkpoint_kwargs,
    device_option,
    model_options,
    report_options,
    settings_from,
    timing_options,
    with_progress,
    write_reports,
)
from maskrt.core.errors import MaskrtError


@click.command("bench", short_help="Several models and backends side by side.", epilog="""\b
Examples:
  maskrt bench shapes_fp32.onnx shapes_fp16.onnx --iterations 50
  maskrt bench model.onnx model.engine --device cuda --dataset val/annotations.json --html bench.html
  maskrt bench model.pth model.onnx --arch maskrcnn_resnet50_fpn --backends torch,onnxruntime""")
@click.argument("models", metavar="MODEL...", nargs=-1, required=True)
@click.option("--backends", default=None, help="Comma-separated variants: torch, torch-fp16, torch-cudagraph, "
              "torch-fp16-cudagraph, onnxruntime, onnxruntime-trt, tensorrt; default: every one that applies "
              "(torch variants for checkpoints, onnxruntime for .onnx, tensorrt for engines; fp16 and CUDA graphs on "
              "cuda).")
@click.option("--batch", type=int, default=None, help="Batch size for every row (default: the first model's own "
              "batch, 1 for dynamic-batch models).")
@click.option("--dataset", "dataset_json", type=click.Path(dir_okay=False),
              help="COCO annotations: every row is also evaluated (bbox and segm AP columns).")
@click.option("--dataset-images", type=click.Path(file_okay=False),
              help="The dataset's image folder (default: images/ next to the annotations).")
@click.option("--dataset-limit", type=int, help="Evaluate on the first N images only.")
@model_options
@device_option
@timing_options
@report_options
def bench_cmd(models, backends, batch, dataset_json, dataset_images, dataset_limit, arch, num_classes, input_size,
              device, warmup_iterations, warmup_seconds, iterations, duration, images_dir, json_out, md_out, html_out):
    """Put several MODELs and backends side by side, measured in alternating order.

    One table: model, backend, precision, status, file size, latency median and p99, FPS, ratio to the first row
    and, with --dataset, COCO bbox and segm AP per row (`maskrt eval`'s numbers). A row that fails says why and the
    others go on.
    """
    from maskrt.backends.select import APPLICABLE, VARIANTS, RunnerSpec, variants_for
    from maskrt.core.onnxfile import model_kind
    from maskrt.evaluation.coco import add_accuracy, load_coco
    from maskrt.profiling.measure import bench

    settings = settings_from(warmup_iterations, warmup_seconds, iterations, duration)
    if batch is not None and batch < 1:
        raise MaskrtError(f"--batch must be >= 1, got {batch}")
    wanted = None
    if backends:
        wanted = [b.strip() for b in backends.split(",") if b.strip()]
        unknown = [b for b in wanted if b not in VARIANTS]
        if unknown:
            raise MaskrtError(f"unknown backend(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    checkpoints = [m for m in models if model_kind(m) == "checkpoint"]
    kwargs = checkpoint_kwargs(checkpoints[0] if checkpoints else models[0], arch, num_classes, input_size)
    specs = []
    for path in models:
        applies = APPLICABLE[model_kind(path)]
        names = ([b for b in wanted if VARIANTS[b][0] in applies] if wanted is not None
                 else variants_for(path, device))
        specs += [RunnerSpec.variant(name, path, device=device, **kwargs) for name in names]
    if not specs:
        raise MaskrtError(f"none of --backends {backends} applies to the models given (torch variants take "
                          "checkpoints, onnxruntime and onnxruntime-trt take .onnx files, tensorrt takes engines)")
    check_report_outputs(json_out, md_out, html_out, inputs=models)
    dataset = None
    if dataset_json is not None:  # refuse a bad dataset before timing
        import os

        folder = dataset_images or os.path.join(os.path.dirname(os.path.abspath(dataset_json)), "images")
        dataset = load_coco(dataset_json, folder, dataset_limit)
    elif dataset_images or dataset_limit is not None:
        raise MaskrtError("--dataset-images and --dataset-limit need --dataset ANNOTATIONS.json")
    report = with_progress(lambda hook: bench(specs, batch, settings, images_dir, hook))
    if dataset is not None and not report.interrupted:
        add_accuracy(report, specs, dataset, log=lambda line: click.echo(line, err=True))
    if all(r.status == "failed" for r in report.runs):
        from maskrt.profiling.render import print_report

        print_report(report)
        raise MaskrtError("every row failed (reasons in the table); no report was written")
    write_reports(report, json_out, md_out, html_out)
    if report.interrupted:
        click.echo("interrupted: the report above holds what was measured before Ctrl-C", err=True)
        raise SystemExit(130)
