"""``build_engine``: ONNX -> checked plan -> TensorRT engine + sidecar, written atomically."""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional

from maskrt.backends.trt.plan import BuildOptions, BuildPlan, CheckFailed, build_batch_limit, inspect_onnx, plan_build
from maskrt.backends.trt.sidecar import make_sidecar, write_sidecar
from maskrt.core.environment import cuda_device
from maskrt.core.fileio import atomic_write, check_output_file
from maskrt.core.onnxfile import ENGINE_SUFFIXES, is_engine_path


@dataclass
class BuildResult:
    path: str
    sidecar_path: str
    size_bytes: int
    seconds: float
    plan: BuildPlan
    sidecar: dict
    timing_cache_written: Optional[str] = None


def build_engine(onnx_path: str, output: str, options: Optional[BuildOptions] = None,
                 log: Callable[[str], None] = lambda s: None) -> BuildResult:
    """Build ``onnx_path`` into a TensorRT engine at ``output`` plus its sidecar ``output.json``.

    Checks everything it can before TensorRT is imported; a failed build leaves no file behind (an existing
    engine at ``output`` stays as it was). ``log`` receives the plan's notes as they come.
    """
    from maskrt import __version__
    from maskrt.backends.trt import api
    from maskrt.plugins.library import tensorrt_plugin_library

    options = options or BuildOptions()
    options.raise_errors()
    output = os.fspath(output)
    check_output_file(output, "-o", inputs=[onnx_path])
    info = inspect_onnx(onnx_path)
    conformance_check(info, options, log)
    plugins = tensorrt_plugin_library(options.plugins, needed=bool(info.plugin_nodes),
                                      who=f"{os.path.basename(info.path)} has {info.plugin_nodes} maskrt plugin node(s)")
    trt_version = api.tensorrt_version()
    plan = plan_build(info, BuildOptions(**{**asdict(options), "plugins": plugins}), trt_version)
    plan.raise_errors()
    gpu = cuda_device()
    for note in plan.notes:
        log(f"note: {note}")
    if not is_engine_path(output):
        log(f"note: {os.path.basename(output)} does not end in {', '.join(ENGINE_SUFFIXES)}: maskrt predict/profile "
            "recognise engines by those suffixes")
    start = time.perf_counter()
    built = api.build_serialized(plan, info.path, log)
    seconds = time.perf_counter() - start
    data = built.data
    sidecar = make_sidecar(engine_file=output, engine_size=len(data), engine_sha256=hashlib.sha256(data).hexdigest(),
                           plan=plan, info=info, io=built.io, gpu=gpu, seconds=seconds, maskrt_version=__version__)
    sidecar["build"]["notes"] = list(plan.notes) + list(built.notes)
    # the engine first, then its sidecar: a stale sidecar is caught by the size/sha256 check when loading
    atomic_write(output, data)
    try:
        side = write_sidecar(output, sidecar)
    except BaseException:
        os.unlink(output)
        raise
    cache_written = None
    if plan.timing_cache and built.timing_cache:
        atomic_write(plan.timing_cache, built.timing_cache)
        cache_written = plan.timing_cache
    return BuildResult(path=output, sidecar_path=side, size_bytes=len(data), seconds=seconds, plan=plan,
                       sidecar=sidecar, timing_cache_written=cache_written)


def conformance_check(info, options: BuildOptions, log: Callable[[str], None] = lambda s: None) -> None:
    """Run ``maskrt check`` on the graph for the installed TensorRT (from its package metadata, without importing
    it; both 10.16 and 11.1 rules when it is not installed) at the largest batch the build allows; CheckFailed (with
    one line per error) when it finds errors, warnings passed to ``log``."""
    from maskrt.check import check_model
    from maskrt.core.environment import tensorrt_package

    installed = tensorrt_package()
    major = installed.split(".")[0] if installed and installed.split(".")[0] in ("10", "11") else None
    strongly_typed = True if info.precision in ("fp16", "int8") else None  # built strongly typed (plan_build)
    report = check_model(info.path, tensorrt=major, max_batch=build_batch_limit(info, options),
                         strongly_typed=strongly_typed)
    for f in report.warnings:
        log(f"check warning [{f.rule}] {f.node}: {f.message}")
    if not report.ok:
        lines = [f"check error [{f.rule}] {f.node}: {f.message}" + (f" (fix: {f.fix})" if f.fix else "")
                 for f in report.errors]
        raise CheckFailed(f"{report.summary()}: TensorRT would refuse this graph (errors listed above; "
                          f"`maskrt check {os.path.basename(info.path)}` explains each)", lines)
