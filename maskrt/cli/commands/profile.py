"""``maskrt profile``: latency, FPS and memory of one model on one backend."""

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


@click.command("profile", short_help="Latency, FPS and memory of one model.", epilog="""\b
Examples:
  maskrt profile shapes.onnx --stages --html report.html
  maskrt profile model.onnx --batch 1,2,4 --json report.json
  maskrt profile --arch maskrcnn_resnet50_fpn --random-weights --device cuda --fp16 --cuda-graph""")
@click.argument("model_path", metavar="[MODEL]", required=False, type=click.Path(dir_okay=False))
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "onnxruntime-trt", "tensorrt"]),
              default="auto", show_default=True,
              help="auto: tensorrt for .engine files, onnxruntime for .onnx files, torch for checkpoints; "
                   "onnxruntime-trt: ONNX Runtime's TensorRT execution provider.")
@click.option("--batch", "batches", default=None, help="Batch sizes to sweep, e.g. 1,2,4,8 (default: the model's "
              "own batch, 1 for a dynamic-batch model).")
@click.option("--stages", is_flag=True, help="Also time each Predictor stage (pre/post-processing, copies).")
@click.option("--layers", is_flag=True, help="TensorRT engines: also a per-layer time table (TensorRT's profiler).")
@click.option("--fp16", is_flag=True, help="torch: half-precision network (CUDA); onnxruntime-trt: fp16 kernels; "
              "for ONNX Runtime export with --precision fp16, for engines build from such an export.")
@click.option("--cuda-graph", is_flag=True, help="torch on CUDA: replay the network from CUDA graphs.")
@click.option("--trt-cache", type=click.Path(file_okay=False), help="onnxruntime-trt: folder for its engine and "
              "timing caches (later sessions skip the build).")
@click.option("--random-weights", is_flag=True, help="Time --arch with random weights (no checkpoint needed).")
@model_options
@device_option
@timing_options
@report_options
def profile_cmd(model_path, backend, batches, stages, layers, fp16, cuda_graph, trt_cache, random_weights, arch,
                num_classes, input_size, device, warmup_iterations, warmup_seconds, iterations, duration, images_dir,
                json_out, md_out, html_out):
    """Measure the latency and FPS of MODEL on one backend.

    MODEL is an .engine, an .onnx export, or a checkpoint with --arch. Times the runner alone (model latency) at
    each batch size, and with --stages every stage of the Predictor. Prints a table and writes --json / --markdown /
    --html reports. Ctrl-C stops and reports what was measured.
    """
    from maskrt.backends.select import RunnerSpec
    from maskrt.core.parsing import parse_batches
    from maskrt.profiling.measure import profile

    settings = settings_from(warmup_iterations, warmup_seconds, iterations, duration, stages, layers)
    sizes = parse_batches(batches) if batches is not None else None
    if model_path is None and not arch:
        raise MaskrtError("give MODEL (.engine, .onnx or checkpoint), or --arch (with --random-weights unless the "
                          "preset ships weights)")
    if model_path and random_weights:
        raise MaskrtError("--random-weights replaces MODEL; pass one or the other")
    spec = RunnerSpec(model_path, backend=backend, device=device, precision="fp16" if fp16 else "fp32",
                      cuda_graph=cuda_graph, random_weights=random_weights,
                      **checkpoint_kwargs(model_path, arch, num_classes, input_size))
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
    if fp16 and resolved == "torch" and device == "cpu":
        import warnings

        from maskrt.core.errors import MaskrtWarning

        warnings.warn(MaskrtWarning("--fp16 on the CPU runs half precision in software (many times slower than fp32); "
                                    "it is meant for --device cuda"), stacklevel=1)
    if resolved == "onnxruntime-trt":
        from maskrt.backends.onnxrt.runner import ort_trt_provider_options

        spec.ort_trt_options = ort_trt_provider_options(fp16=fp16, cache_dir=trt_cache)
    spec.check()
    check_report_outputs(json_out, md_out, html_out, inputs=[model_path])
    report = with_progress(lambda hook: profile(spec, sizes, settings, images_dir, hook))
    write_reports(report, json_out, md_out, html_out)
    if report.interrupted:
        click.echo("interrupted: the report above holds what was measured before Ctrl-C", err=True)
        raise SystemExit(130)
