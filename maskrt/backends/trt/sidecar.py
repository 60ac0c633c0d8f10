"""The JSON sidecar written next to every engine, and the checks that an engine fits this machine.

``model.engine.json`` records what ``maskrt build`` did (TensorRT version, GPU, precision, I/O shapes with the
batch profile, the ONNX's sha256 and maskrt metadata, the plugin library; docs/tensorrt.md describes it). The
runtime reads it before TensorRT sees the engine, so a mismatch is one line that says to rebuild.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from typing import Optional

from maskrt.backends.trt.plan import BuildPlan, OnnxInfo, parse_version
from maskrt.core.environment import file_sha256
from maskrt.core.errors import MaskrtError
from maskrt.core.fileio import atomic_write

#: The sidecar of ``model.engine`` is ``model.engine.json``.
SIDECAR_SUFFIX = ".json"
SIDECAR_SCHEMA = "maskrt.engine-sidecar"
SIDECAR_VERSION = 1


def sidecar_path(engine_path: str) -> str:
    return os.fspath(engine_path) + SIDECAR_SUFFIX


def make_sidecar(*, engine_file: str, engine_size: int, engine_sha256: str, plan: BuildPlan, info: OnnxInfo,
                 io: list, gpu: dict, seconds: float, maskrt_version: str = "") -> dict:
    """The JSON written next to an engine (documented in docs/tensorrt.md).

    ``io``: one dict per engine I/O tensor: name, input (bool), dtype, shape (-1 for dynamic), and for dynamic
    inputs min/opt/max. ``gpu``: name and compute_capability of the GPU it was built on.
    """
    return {
        "schema": SIDECAR_SCHEMA,
        "schema_version": SIDECAR_VERSION,
        "engine": {"file": os.path.basename(engine_file), "size_bytes": int(engine_size), "sha256": engine_sha256},
        "tensorrt": {"version": str(plan.trt_version)},
        "gpu": {"name": gpu.get("name"), "compute_capability": str(gpu.get("compute_capability"))},
        "precision": plan.precision,
        "precision_route": plan.precision_route,
        "tf32": plan.tf32,
        "cuda_graph_capturable": not info.data_dependent,
        "strongly_typed": plan.strongly_typed,
        "inputs": [_io_entry(t) for t in io if t.get("input")],
        "outputs": [_io_entry(t) for t in io if not t.get("input")],
        "onnx": {"file": os.path.basename(info.path), "sha256": info.sha256, "size_bytes": info.size_bytes,
                 "metadata": dict(info.metadata)},
        "plugin_library": plan.plugin_library,
        "build": {
            "workspace_bytes": plan.workspace_bytes,
            "optimization_level": plan.optimization_level,
            "profiles": plan.to_dict()["profiles"],
            "timing_cache": plan.timing_cache,
            "profiling_verbosity": plan.profiling_verbosity,
            "network_flags": list(plan.network_flags),
            "builder_flags": list(plan.builder_flags),
            "notes": list(plan.notes),
            "seconds": round(float(seconds), 3),
            "maskrt_version": maskrt_version,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def _io_entry(t: dict) -> dict:
    out = {"name": t["name"], "dtype": t["dtype"], "shape": [int(d) for d in t["shape"]]}
    for key in ("min", "opt", "max"):
        if t.get(key) is not None:
            out[key] = [int(d) for d in t[key]]
    return out


def write_sidecar(engine_path: str, sidecar: dict) -> str:
    path = sidecar_path(engine_path)
    atomic_write(path, json.dumps(sidecar, indent=1) + "\n")
    return path


def read_sidecar(engine_path: str) -> Optional[dict]:
    """The sidecar of ``engine_path``, or None when there is none; MaskrtError when it is not a maskrt sidecar."""
    path = sidecar_path(engine_path)
    if not os.path.isfile(path):
        return None
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        raise MaskrtError(f"cannot read the engine sidecar {path}: {e}") from None
    if not isinstance(data, dict) or data.get("schema") != SIDECAR_SCHEMA:
        raise MaskrtError(f"{path} is not a maskrt engine sidecar (schema {data.get('schema') if isinstance(data, dict) else None!r})")
    if int(data.get("schema_version", 0)) > SIDECAR_VERSION:
        raise MaskrtError(f"{path} has sidecar schema version {data['schema_version']}, newer than this maskrt reads "
                          f"({SIDECAR_VERSION}); upgrade maskrt")
    for key in ("engine", "tensorrt", "gpu", "inputs", "outputs"):
        if key not in data:
            raise MaskrtError(f"{path} lacks {key!r}: not a complete maskrt engine sidecar; rebuild with `maskrt build`")
    return data


def missing_sidecar_message(engine_path: str) -> str:
    return (f"{engine_path} has no sidecar ({os.path.basename(sidecar_path(engine_path))}): the TensorRT version and "
            "GPU it was built for cannot be checked before loading (TensorRT refuses a mismatch only as it "
            "deserialises), and its maskrt metadata (input size, classes, thresholds) is missing")


def _same_version(a: str, b: str) -> bool:
    """Engines are tied to the TensorRT release that built them: compare major.minor.patch."""
    return parse_version(a)[:3] == parse_version(b)[:3]


def compatibility_problems(sidecar: dict, trt_version: Optional[str], gpu: Optional[dict],
                           check_gpu_name: bool = True) -> list[str]:
    """Why an engine described by ``sidecar`` cannot run with TensorRT ``trt_version`` on ``gpu`` (name,
    compute_capability); empty when it can. Pure."""
    problems = []
    built = sidecar.get("tensorrt", {}).get("version")
    if built and trt_version and not _same_version(built, trt_version):
        problems.append(f"it was built with TensorRT {built} and this is TensorRT {trt_version}")
    want = sidecar.get("gpu", {})
    if gpu is not None and want:
        if str(want.get("compute_capability")) != str(gpu.get("compute_capability")):
            problems.append(f"it was built for {want.get('name')} (compute capability {want.get('compute_capability')}) "
                            f"and this GPU is {gpu.get('name')} (compute capability {gpu.get('compute_capability')})")
        elif check_gpu_name and want.get("name") != gpu.get("name"):
            problems.append(f"it was built on {want.get('name')} and this GPU is {gpu.get('name')} (same compute "
                            "capability, but kernels were timed on the other GPU)")
    return problems


def check_compatible(engine_path: str, sidecar: dict, trt_version: Optional[str], gpu: Optional[dict],
                     check_gpu_name: bool = True) -> None:
    """MaskrtError (one line) when the engine cannot run here; says to rebuild it."""
    problems = compatibility_problems(sidecar, trt_version, gpu, check_gpu_name)
    if problems:
        onnx = sidecar.get("onnx", {}).get("file") or "MODEL.onnx"
        raise MaskrtError(f"{engine_path} cannot run here: {'; '.join(problems)}: rebuild it on this machine with "
                          f"`maskrt build {onnx} -o {os.path.basename(engine_path)}`")


def check_engine_file(engine_path: str, sidecar: dict, sha256: bool = True) -> None:
    """MaskrtError when the engine file is not the one its sidecar describes (truncated, replaced)."""
    want = sidecar.get("engine", {})
    size = os.path.getsize(engine_path)
    if want.get("size_bytes") is not None and size != int(want["size_bytes"]):
        what = "truncated" if size < int(want["size_bytes"]) else "not the file its sidecar describes"
        raise MaskrtError(f"{engine_path} is {what}: {size} bytes, its sidecar says {want['size_bytes']}; rebuild it "
                          "with `maskrt build`")
    if sha256 and want.get("sha256") and file_sha256(engine_path) != want["sha256"]:
        raise MaskrtError(f"{engine_path} does not match its sidecar (sha256 differs): the file was changed or "
                          "corrupted; rebuild it with `maskrt build`")


def sidecar_specs(entries: list) -> dict:
    """name -> (dtype, shape with None for a dynamic dimension) from the sidecar's inputs or outputs."""
    return {e["name"]: (e["dtype"], tuple(None if d < 0 else d for d in e["shape"])) for e in entries}


