"""``maskrt build`` (ONNX -> TensorRT engine + sidecar) and ``maskrt env`` (what this machine can run)."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from typing import Optional

import click

from maskrt.cli.main import cli
from maskrt.errors import MaskrtError


@cli.command("build")
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
@click.option("--timing-cache", type=click.Path(dir_okay=False), help="Timing cache file: read when it exists, "
              "written after the build (later builds go faster).")
@click.option("--optimization-level", type=int, help="TensorRT builder optimization level 0-5 (default 3).")
@click.option("--plugins", type=click.Path(dir_okay=False), help="maskrt TensorRT plugin library (default: found "
              "on the plugin search path when the graph has plugin nodes; see `maskrt plugins path`).")
@click.option("--verbose", is_flag=True, help="TensorRT's verbose log.")
def build_cmd(onnx_path, output, precision, workspace, min_batch, opt_batch, max_batch, timing_cache,
              optimization_level, plugins, verbose):
    """Build a TensorRT engine from an ONNX export (with a JSON sidecar that maskrt's runtime checks)."""
    from maskrt.export.engine import BuildOptions, OnnxParseError, build_engine, human_bytes

    options = BuildOptions(precision=precision, workspace=workspace, min_batch=min_batch, opt_batch=opt_batch,
                           max_batch=max_batch, timing_cache=timing_cache, optimization_level=optimization_level,
                           plugins=plugins, verbose=verbose)
    try:
        result = build_engine(onnx_path, output, options, log=click.echo)
    except OnnxParseError as e:
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


# -- env -----------------------------------------------------------------------------------------------------------
def _version(name: str) -> Optional[str]:
    from maskrt.runtime.environment import package_version

    return package_version(name)


def _nvcc() -> dict:
    from maskrt.plugins.build import find_nvcc

    path = find_nvcc()
    if not path:
        return {"path": None, "version": None}
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=20).stdout
        last = [line for line in out.splitlines() if "release" in line]
        version = last[-1].split("release", 1)[1].split(",")[0].strip() if last else None
    except (OSError, subprocess.SubprocessError):
        version = None
    return {"path": path, "version": version}


def _tensorrt() -> dict:
    from maskrt.runtime.environment import package_version

    info = {"version": None, "importable": False, "error": None,
            "package": package_version("tensorrt") or package_version("tensorrt-cu12") or package_version("tensorrt-cu13")}
    try:
        from maskrt.export.engine_trt import tensorrt_version

        info["version"] = tensorrt_version()
        info["importable"] = True
    except MaskrtError as e:
        info["error"] = str(e)
    return info


def environment_report() -> dict:
    """What this machine has, for ``maskrt env`` (imports torch, onnxruntime and tensorrt where installed)."""
    from maskrt import __version__
    from maskrt.plugins import spec
    from maskrt.plugins.library import find_library, library_filename, search_paths
    from maskrt.runtime.environment import gpu_info, nvidia_driver, onnxruntime_providers

    torch_info = {"version": None, "cuda": None, "cuda_available": False, "gpus": []}
    try:
        import torch

        torch_info.update(version=torch.__version__, cuda=torch.version.cuda, cuda_available=torch.cuda.is_available(),
                          gpus=gpu_info())
    except ImportError:
        pass
    libraries = {}
    for name in (spec.HOST_LIBRARY, spec.KERNEL_LIBRARY, spec.TENSORRT_LIBRARY):
        try:
            libraries[library_filename(name)] = find_library(name)
        except MaskrtError:
            libraries[library_filename(name)] = None
    return {
        "maskrt": __version__,
        "python": {"version": platform.python_version(), "executable": sys.executable},
        "torch": torch_info,
        "nvidia_driver": nvidia_driver() if torch_info["gpus"] else None,
        "onnx": _version("onnx"),
        "onnxruntime": {"version": _version("onnxruntime") or _version("onnxruntime-gpu"),
                        "providers": onnxruntime_providers()},
        "onnxruntime_extensions": _version("onnxruntime-extensions") or _version("onnxruntime_extensions"),
        "pycocotools": _version("pycocotools"),
        "tensorrt": _tensorrt(),
        "plugins": {"search_paths": search_paths(), "libraries": libraries},
        "nvcc": _nvcc(),
        "cmake": shutil.which("cmake"),
    }


GPU_HINT = "an NVIDIA GPU with its driver, and a CUDA build of torch (https://pytorch.org)"
TRT_HINT = "pip install maskrt[gpu] (TensorRT; needs an NVIDIA GPU and driver)"


def capabilities(report: dict) -> list[dict]:
    """Per maskrt command (and model kind): can it run here, and what to install if not. Pure."""
    torch_ok = bool(report["torch"]["version"])
    cuda_ok = torch_ok and bool(report["torch"]["cuda_available"])
    onnx_ok = bool(report.get("onnx"))
    ort_ok = bool(report["onnxruntime"]["version"])
    providers = report["onnxruntime"].get("providers") or []
    trt_info = report["tensorrt"]
    trt_ok = bool(trt_info.get("importable"))
    trt_lib = (report["plugins"]["libraries"] or {})
    plugin_ok = any(v for k, v in trt_lib.items() if "trt" in k)
    rows = []

    def row(command, needs):
        missing = [(what, hint) for ok, what, hint in needs if not ok]
        rows.append({"command": command, "ok": not missing,
                     "reason": "ready" if not missing else "needs " + ", ".join(w for w, _ in missing),
                     "install": "; ".join(dict.fromkeys(h for _, h in missing))})

    torch_need = (torch_ok, "torch", "pip install torch==2.13.0")
    cuda_need = (cuda_ok, "a CUDA device", GPU_HINT)
    onnx_need = (onnx_ok, "onnx", "pip install onnx")
    ort_need = (ort_ok, "onnxruntime", "pip install onnxruntime (or onnxruntime-gpu)")
    trt_hint = trt_info.get("error") if trt_info.get("package") and trt_info.get("error") else TRT_HINT
    trt_need = (trt_ok, "tensorrt", trt_hint)
    row("export", [torch_need, onnx_need])
    row("export --verify", [torch_need, onnx_need, ort_need])
    row("predict / profile / bench: checkpoint", [torch_need])
    row("predict / profile / bench: checkpoint --device cuda", [torch_need, cuda_need])
    row("predict / profile / bench: .onnx", [onnx_need, ort_need])
    row("predict / profile / bench: .onnx --device cuda", [onnx_need, ort_need,
        ("CUDAExecutionProvider" in providers, "onnxruntime's CUDA provider", "pip install onnxruntime-gpu")])
    row("predict / profile / bench: .onnx --target tensorrt graph", [onnx_need, ort_need,
        (bool(report.get("onnxruntime_extensions")), "onnxruntime-extensions", "pip install onnxruntime-extensions")])
    row("profile / bench --backend onnxruntime-trt", [ort_need,
        ("TensorrtExecutionProvider" in providers, "onnxruntime's TensorRT provider",
         "pip install onnxruntime-gpu tensorrt")])
    row("build", [trt_need, cuda_need])
    row("build: graph with plugin nodes", [trt_need, cuda_need,
        (plugin_ok, "the maskrt TensorRT plugin library", "maskrt plugins build (needs nvcc and TensorRT)")])
    row("predict / profile / bench: .engine", [trt_need, cuda_need])
    row("plugins build (host twin)", [(bool(report.get("cmake")), "cmake", "apt install cmake (or pip install cmake)")])
    row("plugins build (CUDA kernel, TensorRT plugin)", [
        (bool(report.get("cmake")), "cmake", "apt install cmake (or pip install cmake)"),
        (bool(report["nvcc"].get("path")), "nvcc", "install the CUDA toolkit"),
        (trt_ok, "tensorrt (for the plugin)", trt_hint)])
    coco_need = (bool(report.get("pycocotools")), "pycocotools", "pip install pycocotools")
    row("eval", [torch_need, coco_need])
    row("data shapes", [coco_need])
    row("train", [torch_need])
    from maskrt.model.presets import get_preset

    row("demo (torch, ONNX Runtime fp32/fp16)", [torch_need, onnx_need, ort_need, coco_need,
        (get_preset("shapes").weights_path() is not None, "the embedded shapes weights",
         "reinstall maskrt (maskrt/model/weights/shapes.safetensors is missing)"),
        (bool(report.get("onnxruntime_extensions")), "onnxruntime-extensions (TensorRT-target check)",
         "pip install onnxruntime-extensions")])
    row("demo: + TensorRT engine row", [trt_need, cuda_need])
    return rows


def _gpus(report: dict) -> str:
    gpus = report["torch"]["gpus"]
    return "; ".join(f"{g['name']} (sm {g['compute_capability']})" for g in gpus) or "none"


def report_lines(report: dict, rows: list[dict]) -> list[str]:
    t, ort, trt_info = report["torch"], report["onnxruntime"], report["tensorrt"]
    lines = [
        f"maskrt                  {report['maskrt']}",
        f"python                  {report['python']['version']} ({report['python']['executable']})",
        f"torch                   {t['version'] or 'not installed'}"
        + (f" (CUDA {t['cuda'] or 'none'}; GPUs: {_gpus(report)})" if t["version"] else ""),
        f"nvidia driver           {report['nvidia_driver'] or '-'}",
        f"onnx                    {report['onnx'] or 'not installed'}",
        f"onnxruntime             {ort['version'] or 'not installed'}"
        + (f" (providers: {', '.join(ort['providers']) or 'none'})" if ort["version"] else ""),
        f"onnxruntime-extensions  {report['onnxruntime_extensions'] or 'not installed'}",
        f"tensorrt                {trt_info['version'] if trt_info['importable'] else 'not importable: ' + (trt_info['error'] or '?')}",
        f"nvcc                    {report['nvcc']['path'] or 'not found'}"
        + (f" (CUDA {report['nvcc']['version']})" if report["nvcc"].get("version") else ""),
        f"cmake                   {report['cmake'] or 'not found'}",
    ]
    for name, path in report["plugins"]["libraries"].items():
        lines.append(f"{name:<24}{' ' if len(name) >= 24 else ''}{path or 'not built'}")
    lines.append("")
    lines.append("commands:")
    width = max(len(r["command"]) for r in rows)
    for r in rows:
        text = f"  {'yes' if r['ok'] else 'no ':3}  {r['command']:<{width}}"
        if not r["ok"]:
            text += f"  {r['reason']}"
        lines.append(text.rstrip())
        if not r["ok"] and r["install"]:
            lines.append(f"{'':7}install: {r['install']}")
    return lines


@cli.command("env")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for machines).")
def env_cmd(as_json):
    """What this machine can do: libraries, GPUs, TensorRT, plugin libraries, and which maskrt commands run."""
    report = environment_report()
    rows = capabilities(report)
    if as_json:
        click.echo(json.dumps({**report, "commands": rows}, indent=1))
        return
    for line in report_lines(report, rows):
        click.echo(line)
