"""TensorRT engines, the parts that need no TensorRT: options, the build plan, the sidecar, compatibility.

``maskrt build`` turns an ONNX export into a serialized TensorRT engine. Everything that can be decided without
TensorRT is decided here, as pure functions that the tests exercise:

* :func:`parse_workspace` and :class:`BuildOptions` (the command's options, checked);
* :func:`inspect_onnx` -> :class:`OnnxInfo` (inputs, outputs, precision, plugin nodes, maskrt metadata);
* :func:`version_rules` (what the installed TensorRT version allows: the one place that looks at the version)
  and :func:`plan_build` -> :class:`BuildPlan` (network and builder flags, optimization profiles, the precision
  route, notes and errors);
* the engine's JSON sidecar (:func:`make_sidecar`, :func:`write_sidecar`, :func:`read_sidecar`) and the check
  that an engine fits the running TensorRT and GPU (:func:`compatibility_problems`, :func:`check_compatible`,
  :func:`check_engine_file`).

The calls into TensorRT itself live in :mod:`maskrt.export.engine_trt`, imported only when a build or a run
needs it. :func:`build_engine` ties the two together and writes the engine and its sidecar atomically.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

from maskrt.errors import MaskrtError

TENSORRT_MISSING = "TensorRT is not installed: pip install maskrt[gpu] (needs an NVIDIA GPU and driver)"

#: File suffixes that the runtime treats as TensorRT engines.
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
#: The sidecar of ``model.engine`` is ``model.engine.json``.
SIDECAR_SUFFIX = ".json"
SIDECAR_SCHEMA = "maskrt.engine-sidecar"
SIDECAR_VERSION = 1

#: TensorRT major versions maskrt's TensorRT code is written for (checked against their API surfaces).
SUPPORTED_MAJORS = (10, 11)
PRECISIONS = ("fp32", "fp16")
OPTIMIZATION_LEVELS = range(0, 6)  # TensorRT's builder optimization levels (default 3)

DEFAULT_MIN_BATCH = 1
DEFAULT_MAX_BATCH = 8


def is_engine_path(path: Optional[str]) -> bool:
    return bool(path) and str(path).lower().endswith(ENGINE_SUFFIXES)


def sidecar_path(engine_path: str) -> str:
    return os.fspath(engine_path) + SIDECAR_SUFFIX


# -- options -------------------------------------------------------------------------------------------------------
_UNITS = {"": 1, "b": 1, "k": 2**10, "kb": 2**10, "kib": 2**10, "m": 2**20, "mb": 2**20, "mib": 2**20,
          "g": 2**30, "gb": 2**30, "gib": 2**30, "t": 2**40, "tb": 2**40, "tib": 2**40}
WORKSPACE_FORMS = "bytes (1073741824) or a number with K, M, G, T (or KiB/MiB/GiB/TiB, KB/MB/GB/TB: all powers of 1024)"


def parse_workspace(text) -> int:
    """'4G', '512M', '1GiB', '1.5G' or a byte count -> bytes. Every unit is a power of 1024."""
    if isinstance(text, bool):
        raise MaskrtError(f"--workspace must be {WORKSPACE_FORMS}, got {text!r}")
    if isinstance(text, int):
        value = text
    else:
        m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*", str(text))
        if not m or m.group(2).lower() not in _UNITS:
            raise MaskrtError(f"--workspace must be {WORKSPACE_FORMS}, got {text!r}")
        value = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    if value <= 0:
        raise MaskrtError(f"--workspace must be more than 0 bytes, got {text!r}")
    return value


def human_bytes(n: Optional[int]) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} B" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@dataclass
class BuildOptions:
    """What ``maskrt build`` was asked for. ``precision`` None: the ONNX's own precision."""

    precision: Optional[str] = None
    workspace: Optional[object] = None  # bytes, or text for parse_workspace
    min_batch: Optional[int] = None
    opt_batch: Optional[int] = None
    max_batch: Optional[int] = None
    timing_cache: Optional[str] = None
    optimization_level: Optional[int] = None
    plugins: Optional[str] = None
    verbose: bool = False

    def batch_given(self) -> bool:
        return any(v is not None for v in (self.min_batch, self.opt_batch, self.max_batch))

    def check(self) -> list[str]:
        """Problems that do not depend on the model or the TensorRT version (empty when fine)."""
        errors = []
        if self.precision is not None and self.precision not in PRECISIONS:
            errors.append(f"--precision must be fp32 or fp16, got {self.precision!r} (INT8 is not supported)")
        if self.workspace is not None:
            try:
                parse_workspace(self.workspace)
            except MaskrtError as e:
                errors.append(str(e))
        for flag, value in (("--min-batch", self.min_batch), ("--opt-batch", self.opt_batch),
                            ("--max-batch", self.max_batch)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                errors.append(f"{flag} must be a positive integer, got {value!r}")
        if not errors:
            lo, opt, hi = self.min_batch, self.opt_batch, self.max_batch
            if lo is not None and hi is not None and lo > hi:
                errors.append(f"--min-batch {lo} is larger than --max-batch {hi}")
            elif opt is not None and ((lo is not None and opt < lo) or (hi is not None and opt > hi)):
                errors.append(f"--opt-batch {opt} must lie between --min-batch {lo or DEFAULT_MIN_BATCH} and "
                              f"--max-batch {hi if hi is not None else 'its default'}")
        if self.optimization_level is not None and self.optimization_level not in OPTIMIZATION_LEVELS:
            errors.append(f"--optimization-level must be 0 to 5 (TensorRT's default is 3), got "
                          f"{self.optimization_level}")
        if self.timing_cache is not None:
            folder = os.path.dirname(os.path.abspath(self.timing_cache))
            if os.path.isdir(self.timing_cache):
                errors.append(f"--timing-cache {self.timing_cache} is a folder; give a file")
            elif not os.path.isdir(folder):
                errors.append(f"--timing-cache {self.timing_cache}: folder {folder} does not exist")
        return errors

    def raise_errors(self) -> None:
        errors = self.check()
        if errors:
            raise MaskrtError(errors[0])


# -- the ONNX ------------------------------------------------------------------------------------------------------
@dataclass
class OnnxInfo:
    """What a build needs to know about an ONNX file. Shapes use None for a symbolic dimension."""

    path: str
    inputs: dict  # name -> {"dtype": str, "shape": [int | None]}
    outputs: dict
    precision: str = "fp32"  # from maskrt metadata, else fp16 when the weights are fp16
    plugin_nodes: int = 0  # maskrt TensorRT plugin nodes
    metadata: dict = field(default_factory=dict)  # maskrt metadata_props
    sha256: str = ""
    size_bytes: int = 0

    @property
    def dynamic_inputs(self) -> dict:
        return {n: v for n, v in self.inputs.items() if any(d is None for d in v["shape"])}


def inspect_onnx(path: str) -> OnnxInfo:
    """Read an .onnx file (MaskrtError when it is missing or unreadable) into an :class:`OnnxInfo`."""
    from maskrt.plugins import spec
    from maskrt.runtime.environment import file_sha256
    from maskrt.runtime.runners import _value_specs, load_onnx

    proto = load_onnx(os.fspath(path))
    init = {i.name for i in proto.graph.initializer}
    inputs = {n: {"dtype": s.dtype, "shape": list(s.shape)} for n, s in _value_specs(proto.graph.input, init).items()}
    outputs = {n: {"dtype": s.dtype, "shape": list(s.shape)} for n, s in _value_specs(proto.graph.output).items()}
    props = {p.key: p.value for p in proto.metadata_props}
    precision = props.get("precision")
    if precision not in PRECISIONS:
        fp16 = sum(1 for t in proto.graph.initializer if t.data_type == 10)
        fp32 = sum(1 for t in proto.graph.initializer if t.data_type == 1)
        precision = "fp16" if fp16 > fp32 else "fp32"
    plugins = sum(1 for n in proto.graph.node if n.op_type == spec.PLUGIN_NAME)
    return OnnxInfo(path=os.fspath(path), inputs=inputs, outputs=outputs, precision=precision, plugin_nodes=plugins,
                    metadata=props, sha256=file_sha256(path), size_bytes=os.path.getsize(path))


# -- the TensorRT version ------------------------------------------------------------------------------------------
def parse_version(text: str) -> tuple[int, ...]:
    """'10.16.0.72' -> (10, 16, 0, 72); MaskrtError for text that does not start with a number."""
    parts = []
    for piece in str(text).strip().split("."):
        m = re.match(r"\d+", piece)
        if not m:
            break
        parts.append(int(m.group(0)))
    if not parts:
        raise MaskrtError(f"cannot read TensorRT version {text!r}")
    return tuple(parts)


@dataclass(frozen=True)
class VersionRules:
    """What one TensorRT version offers, as far as maskrt's build is concerned."""

    version: str
    major: int
    fp16_builder_flag: bool  # BuilderFlag.FP16 exists (10.x); 11.x builds strongly typed networks only
    strongly_typed_flag: bool  # request strong typing with NetworkDefinitionCreationFlag.STRONGLY_TYPED
    always_strongly_typed: bool  # 11.x: every network is strongly typed (the flag is deprecated and ignored)
    note: Optional[str] = None


def version_rules(trt_version: str) -> VersionRules:
    """The one place that decides what to call for a TensorRT version. MaskrtError for versions before 10."""
    v = parse_version(trt_version)
    major = v[0]
    if major < SUPPORTED_MAJORS[0]:
        raise MaskrtError(f"TensorRT {trt_version} is too old: maskrt builds with TensorRT 10 or 11 "
                          "(pip install --upgrade tensorrt)")
    if major == 10:
        return VersionRules(trt_version, major, fp16_builder_flag=True, strongly_typed_flag=True,
                            always_strongly_typed=False)
    note = None
    if major > SUPPORTED_MAJORS[-1]:
        note = (f"TensorRT {trt_version} is newer than the versions maskrt was written for (10, 11): building as "
                "for TensorRT 11")
    return VersionRules(trt_version, major, fp16_builder_flag=False, strongly_typed_flag=False,
                        always_strongly_typed=True, note=note)


# -- the plan ------------------------------------------------------------------------------------------------------
@dataclass
class BuildPlan:
    """Everything the TensorRT layer does for one build, decided in advance.

    ``network_flags`` / ``builder_flags`` name members of ``NetworkDefinitionCreationFlag`` / ``BuilderFlag``;
    ``profiles`` holds one dict per optimization profile: input name -> (min, opt, max) shapes.
    ``precision_route``: "fp32", "builder-flag" (10.x: fp16 kernels chosen by TensorRT on an fp32 network) or
    "onnx-types" (a strongly typed network that keeps the fp16 export's own types).
    """

    trt_version: str
    trt_major: int
    precision: str
    precision_route: str
    strongly_typed: bool
    network_flags: tuple = ()
    builder_flags: tuple = ()
    profiles: list = field(default_factory=list)
    workspace_bytes: Optional[int] = None
    optimization_level: Optional[int] = None
    timing_cache: Optional[str] = None
    plugin_library: Optional[str] = None
    profiling_verbosity: str = "DETAILED"
    verbose: bool = False
    notes: list = field(default_factory=list)
    errors: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_errors(self) -> None:
        if self.errors:
            raise MaskrtError(self.errors[0])

    def to_dict(self) -> dict:
        d = asdict(self)
        d["profiles"] = [{k: [list(s) for s in v] for k, v in p.items()} for p in self.profiles]
        return d


def plan_build(info: OnnxInfo, options: BuildOptions, trt_version: str) -> BuildPlan:
    """Translate the options for one ONNX file into a :class:`BuildPlan` for TensorRT ``trt_version``.

    Pure: looks at no file and imports nothing. Problems go into ``plan.errors`` (the first is what the command
    says), remarks into ``plan.notes``.
    """
    errors = list(options.check())
    notes = []
    try:
        rules = version_rules(trt_version)
    except MaskrtError as e:
        rules = None
        errors.append(str(e))
    if rules is not None and rules.note:
        notes.append(rules.note)
    major = rules.major if rules else parse_version(trt_version)[0]
    name = os.path.basename(info.path)

    # precision: the ONNX's own unless asked; how to get it depends on the version
    precision = options.precision or info.precision
    route, strongly_typed, network_flags, builder_flags = "fp32", False, (), ()
    if info.precision == "fp16":
        if precision == "fp32":
            errors.append(f"{name} is an fp16 export (its weights and types are fp16): --precision fp32 needs an "
                          "fp32 export (`maskrt export --precision fp32`)")
        route, strongly_typed = "onnx-types", True
    elif precision == "fp16":
        if rules is not None and rules.fp16_builder_flag:
            route, builder_flags = "builder-flag", ("FP16",)
            notes.append("fp16 from the builder flag: TensorRT picks fp16 kernels where they are faster, on the fp32 "
                         "graph; an fp16 export (`maskrt export --precision fp16`) keeps box decoding and NMS scores "
                         "in fp32 by construction")
        elif rules is not None:
            errors.append(f"TensorRT {trt_version} builds strongly typed networks only (no fp16 builder flag): fp16 "
                          f"comes from an fp16 ONNX; {name} is fp32: export with `maskrt export --precision fp16` "
                          "and build that file")
    if rules is not None:
        if rules.always_strongly_typed:
            strongly_typed = True  # nothing to request: the flag is deprecated and ignored
        elif strongly_typed and rules.strongly_typed_flag:
            network_flags = ("STRONGLY_TYPED",)

    # optimization profiles over the batch dimension
    profiles = []
    dynamic = info.dynamic_inputs
    if dynamic:
        others = {n: v["shape"] for n, v in dynamic.items() if any(d is None for d in v["shape"][1:])}
        if others:
            n, shape = next(iter(others.items()))
            errors.append(f"input {n!r} of {name} has dynamic dimensions other than the batch "
                          f"({_shape_text(shape)}): maskrt build makes profiles over the batch only; export at a "
                          "fixed size")
        else:
            lo = options.min_batch or DEFAULT_MIN_BATCH
            hi = options.max_batch or max(DEFAULT_MAX_BATCH, lo, options.opt_batch or 0)
            opt = options.opt_batch or lo
            if lo > hi:
                errors.append(f"--min-batch {lo} is larger than --max-batch {hi}")
            elif not lo <= opt <= hi:
                errors.append(f"--opt-batch {opt} must lie between --min-batch {lo} and --max-batch {hi}")
            else:
                profiles.append({n: tuple((b, *v["shape"][1:]) for b in (lo, opt, hi)) for n, v in dynamic.items()})
                notes.append(f"dynamic batch: one optimization profile, batch min {lo} / opt {opt} / max {hi}")
    elif options.batch_given():
        batch = next(iter(info.inputs.values()))["shape"][0] if info.inputs else "?"
        notes.append(f"{name} has a fixed batch of {batch}: --min-batch/--opt-batch/--max-batch are ignored (export "
                     "with --dynamic-batch for a range)")

    # plugins
    if info.plugin_nodes and not options.plugins:
        errors.append(f"{name} has {info.plugin_nodes} maskrt plugin node(s) and no plugin library was given or "
                      "found: build it with `maskrt plugins build`, or pass --plugins LIB")
    elif options.plugins and not info.plugin_nodes:
        notes.append(f"{name} has no maskrt plugin nodes; the plugin library is loaded anyway")

    workspace = None
    if options.workspace is not None:
        try:
            workspace = parse_workspace(options.workspace)
        except MaskrtError:
            pass  # already in errors
    return BuildPlan(trt_version=str(trt_version), trt_major=major, precision=precision, precision_route=route,
                     strongly_typed=strongly_typed, network_flags=network_flags, builder_flags=builder_flags,
                     profiles=profiles, workspace_bytes=workspace, optimization_level=options.optimization_level,
                     timing_cache=options.timing_cache, plugin_library=options.plugins, verbose=options.verbose,
                     notes=notes, errors=_unique(errors))


def _unique(items: list) -> list:
    out = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def _shape_text(shape) -> str:
    return "x".join("?" if d is None or (isinstance(d, int) and d < 0) else str(d) for d in shape)


def resolve_plugin_library(info: OnnxInfo, explicit: Optional[str]) -> Optional[str]:
    """The plugin library to load: ``explicit`` (which must exist), else the one found on the plugin search path
    when the graph has plugin nodes, else None."""
    if explicit:
        if not os.path.isfile(explicit):
            raise MaskrtError(f"--plugins {explicit}: no such file")
        return os.path.abspath(explicit)
    if not info.plugin_nodes:
        return None
    from maskrt.plugins import spec
    from maskrt.plugins.library import find_library

    try:
        return find_library(spec.TENSORRT_LIBRARY)
    except MaskrtError as e:
        raise MaskrtError(f"{os.path.basename(info.path)} has {info.plugin_nodes} maskrt plugin node(s): {e}") from None


def dlopen_plugin_library(path: str):
    """Load a plugin library into the process (ctypes); MaskrtError with the loader's reason when it cannot."""
    import ctypes

    if not os.path.isfile(path):
        raise MaskrtError(f"plugin library {path}: no such file")
    try:
        return ctypes.CDLL(os.path.abspath(path), mode=getattr(ctypes, "RTLD_GLOBAL", 0))
    except OSError as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MaskrtError(f"cannot load plugin library {path}: {reason} (rebuild it with `maskrt plugins build` "
                          "against the installed TensorRT)") from None


def parser_error_lines(errors: list) -> list[str]:
    """One line per ONNX parser error: ``node NAME (OP): description``. ``errors``: dicts with node_name,
    node (index), operator and desc."""
    lines = []
    for e in errors:
        node = e.get("node_name") or (f"#{e['node']}" if e.get("node", -1) not in (None, -1) else "(graph)")
        op = f" ({e['operator']})" if e.get("operator") else ""
        desc = " ".join(str(e.get("desc", "")).split())
        lines.append(f"node {node}{op}: {desc}")
    return lines


class OnnxParseError(MaskrtError):
    """TensorRT's ONNX parser refused the graph; ``lines`` holds one line per parser error."""

    def __init__(self, message: str, lines: list[str]):
        super().__init__(message)
        self.lines = list(lines)


# -- the sidecar ---------------------------------------------------------------------------------------------------
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


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to a temporary file in ``path``'s folder, then rename it over ``path``."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MaskrtError(f"cannot write {path}: folder {folder} does not exist")
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as e:
        raise MaskrtError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_sidecar(engine_path: str, sidecar: dict) -> str:
    path = sidecar_path(engine_path)
    write_atomic(path, (json.dumps(sidecar, indent=1) + "\n").encode("utf-8"))
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
    if sha256 and want.get("sha256"):
        from maskrt.runtime.environment import file_sha256

        if file_sha256(engine_path) != want["sha256"]:
            raise MaskrtError(f"{engine_path} does not match its sidecar (sha256 differs): the file was changed or "
                              "corrupted; rebuild it with `maskrt build`")


def sidecar_specs(entries: list) -> dict:
    """name -> (dtype, shape with None for a dynamic dimension) from the sidecar's inputs or outputs."""
    return {e["name"]: (e["dtype"], tuple(None if d < 0 else d for d in e["shape"])) for e in entries}


# -- the build -----------------------------------------------------------------------------------------------------
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
    import hashlib

    from maskrt import __version__

    options = options or BuildOptions()
    options.raise_errors()
    output = os.fspath(output)
    folder = os.path.dirname(os.path.abspath(output))
    if not os.path.isdir(folder):
        raise MaskrtError(f"cannot write {output}: folder {folder} does not exist")
    if os.path.isdir(output):
        raise MaskrtError(f"-o {output} is a folder; give the engine file name (e.g. model.engine)")
    info = inspect_onnx(onnx_path)
    if os.path.abspath(output) == os.path.abspath(onnx_path):
        raise MaskrtError("-o would overwrite the ONNX file; choose another name (e.g. model.engine)")
    plugins = resolve_plugin_library(info, options.plugins)
    from maskrt.export import engine_trt

    trt_version = engine_trt.tensorrt_version()
    plan = plan_build(info, BuildOptions(**{**asdict(options), "plugins": plugins}), trt_version)
    plan.raise_errors()
    gpu = current_gpu()
    for note in plan.notes:
        log(f"note: {note}")
    if not is_engine_path(output):
        log(f"note: {os.path.basename(output)} does not end in {', '.join(ENGINE_SUFFIXES)}: maskrt predict/profile "
            "recognise engines by those suffixes")
    start = time.perf_counter()
    built = engine_trt.build_serialized(plan, info.path, log)
    seconds = time.perf_counter() - start
    data = built.data
    sidecar = make_sidecar(engine_file=output, engine_size=len(data), engine_sha256=hashlib.sha256(data).hexdigest(),
                           plan=plan, info=info, io=built.io, gpu=gpu, seconds=seconds, maskrt_version=__version__)
    sidecar["build"]["notes"] = list(plan.notes) + list(built.notes)
    # the engine first, then its sidecar: a stale sidecar is caught by the size/sha256 check when loading
    write_atomic(output, data)
    try:
        side = write_sidecar(output, sidecar)
    except MaskrtError:
        os.unlink(output)
        raise
    cache_written = None
    if plan.timing_cache and built.timing_cache:
        write_atomic(plan.timing_cache, built.timing_cache)
        cache_written = plan.timing_cache
    return BuildResult(path=output, sidecar_path=side, size_bytes=len(data), seconds=seconds, plan=plan,
                       sidecar=sidecar, timing_cache_written=cache_written)


def current_gpu(device: Optional[str] = None) -> dict:
    """Name and compute capability of the CUDA device torch uses (``device`` or the current one)."""
    import torch

    if not torch.cuda.is_available():
        raise MaskrtError("TensorRT needs an NVIDIA GPU: torch sees no CUDA device (check the driver, or install a "
                          "CUDA build of torch)")
    index = torch.device(device).index if device and ":" in str(device) else torch.cuda.current_device()
    p = torch.cuda.get_device_properties(index)
    return {"index": index, "name": p.name, "compute_capability": f"{p.major}.{p.minor}"}
