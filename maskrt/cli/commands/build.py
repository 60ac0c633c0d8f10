"""``maskrt build``: an ONNX export to a TensorRT engine plus its sidecar."""

from __future__ import annotations

import os

import click


@click.command("build", short_help="Build a TensorRT engine from an ONNX export.", epilog="""\b
Examples:
  maskrt build model_fp16.onnx -o model_fp16.engine --max-batch 8 --timing-cache trt.cache
  maskrt build shapes.onnx -o shapes.engine
  maskrt build model_trt.onnx -o model_trt.engine --plugins ~/.cache/maskrt/plugins/libmaskrt_trt_plugins.so""")
@click.argument("onnx_path", metavar="MODEL.onnx", type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="Engine file to write (e.g. model.engine); its sidecar goes to OUTPUT.json.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None,
              help="Default: the ONNX's own. fp16 on an fp32 ONNX: TensorRT 10's builder flag; TensorRT 11 takes "
                   "fp16 from an fp16 export only.")
@click.option("--workspace", help="Builder workspace limit: bytes, or with K/M/G/T (e.g. 4G, 512M, 1GiB).")
@click.option("--min-batch", type=int, help="Dynamic-batch ONNX: smallest batch of the profile (default 1).")
@click.option("--opt-batch", type=int, help="Dynamic-batch ONNX: batch the kernels are tuned for (default: min).")
@click.option("--max-batch", type=int, help="Dynamic-batch ONNX: largest batch of the profile (default 8).")
@click.option("--min-shape", help="Dynamic-size ONNX: smallest HxW of the profile (default: the export's bound).")
@click.option("--opt-shape", help="Dynamic-size ONNX: HxW the kernels are tuned for (default: the export size).")
@click.option("--max-shape", help="Dynamic-size ONNX: largest HxW of the profile (default: the export's bound).")
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="Timing cache file: read when it exists, "
              "written after the build (later builds go faster).")
@click.option("--optimization-level", type=int, help="TensorRT builder optimization level 0-5 (default 3).")
@click.option("--plugins", type=click.Path(dir_okay=False), help="maskrt TensorRT plugin library (default: found "
              "on the plugin search path when the graph has plugin nodes; see `maskrt plugins path`).")
@click.option("--tf32", is_flag=True, help="Let fp32 layers use TF32 on Ampere and newer (TensorRT's default; "
              "maskrt builds fp32 as fp32 unless asked).")
@click.option("--verbose", is_flag=True, help="TensorRT's verbose log.")
def build_cmd(onnx_path, output, precision, workspace, min_batch, opt_batch, max_batch, min_shape, opt_shape,
              max_shape, timing_cache, optimization_level, plugins, tf32, verbose):
    """Build a TensorRT engine from an ONNX export, with a JSON sidecar that maskrt's runtime checks."""
    from maskrt.backends.trt.build import build_engine
    from maskrt.backends.trt.plan import BuildOptions, CheckFailed, OnnxParseError
    from maskrt.core.formatting import human_bytes
    from maskrt.core.parsing import parse_size

    shapes = {name: parse_size(value, f"--{name.replace('_', '-')}") if value else None
              for name, value in (("min_shape", min_shape), ("opt_shape", opt_shape), ("max_shape", max_shape))}
    options = BuildOptions(precision=precision, workspace=workspace, min_batch=min_batch, opt_batch=opt_batch,
                           max_batch=max_batch, timing_cache=timing_cache, optimization_level=optimization_level,
                           plugins=plugins, tf32=tf32, verbose=verbose, **shapes)
    try:
        result = build_engine(onnx_path, output, options, log=click.echo)
    except (OnnxParseError, CheckFailed) as e:
        for line in e.lines:
            click.echo(line, err=True)
        raise
    side = result.sidecar
    click.echo(f"built {os.path.abspath(result.path)} ({human_bytes(result.size_bytes)}) in {result.seconds:.1f} s: "
               f"TensorRT {side['tensorrt']['version']}, {side['gpu']['name']} (sm {side['gpu']['compute_capability']}), "
               f"{result.plan.precision} ({result.plan.precision_route})")
    click.echo(f"wrote {result.sidecar_path}")
    if result.timing_cache_written:
        click.echo(f"wrote timing cache {result.timing_cache_written}")
    click.echo("next:")
    click.echo(f"  maskrt predict {result.path} IMAGE.jpg --out predictions/")
    click.echo(f"  maskrt profile {result.path} --layers --html report.html")
    click.echo(f"  maskrt bench {onnx_path} {result.path} --device cuda")
