"""What this machine can run: libraries, GPUs, TensorRT, plugin libraries, and which maskrt commands work here
(``maskrt env``). Builds on :func:`maskrt.core.environment.environment`'s facts; :func:`capabilities` is pure."""

from __future__ import annotations

import shutil
import subprocess
import sys

from maskrt import __version__
from maskrt.backends.trt.api import tensorrt_version
from maskrt.core.environment import environment, package_version, tensorrt_package
from maskrt.core.errors import MaskrtError
from maskrt.model.presets import get_preset
from maskrt.plugins import spec
from maskrt.plugins.build import find_nvcc
from maskrt.plugins.library import find_library, library_filename, search_paths


def _nvcc() -> dict:
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
    info = {"version": None, "importable": False, "error": None, "package": tensorrt_package()}
    try:
        info["version"] = tensorrt_version()
        info["importable"] = True
    except MaskrtError as e:
        info["error"] = str(e)
    return info


def environment_report() -> dict:
    """What this machine has, for ``maskrt env`` (imports torch, onnxruntime and tensorrt where installed)."""
    base = environment()
    torch_info = {"version": base["torch"], "cuda": base["torch_cuda"], "cuda_available": bool(base["gpus"]),
                  "gpus": base["gpus"]}
    libraries = {}
    for name in (spec.HOST_LIBRARY, spec.KERNEL_LIBRARY, spec.TENSORRT_LIBRARY):
        try:
            libraries[library_filename(name)] = find_library(name)
        except MaskrtError:
            libraries[library_filename(name)] = None
    return {
        "maskrt": __version__,
        "python": {"version": base["python"], "executable": sys.executable},
        "torch": torch_info,
        "nvidia_driver": base["nvidia_driver"],
        "onnx": package_version("onnx"),
        "onnxruntime": {"version": base["onnxruntime"], "providers": base["onnxruntime_providers"]},
        "onnxruntime_extensions": package_version("onnxruntime-extensions") or package_version("onnxruntime_extensions"),
        "pycocotools": package_version("pycocotools"),
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
