"""TensorRT builds decided without TensorRT: options, the ONNX file's facts, the version rules and the plan.

``maskrt build`` turns an ONNX export into a serialized engine. Everything that can be decided without TensorRT
is decided here, as pure functions that the tests exercise:

* :class:`BuildOptions` (the command's options, checked);
* :func:`inspect_onnx` -> :class:`OnnxInfo` (inputs, outputs, precision, plugin nodes, maskrt metadata);
* :func:`version_rules` (what the installed TensorRT version allows: the one place that looks at the version)
  and :func:`plan_build` -> :class:`BuildPlan` (network and builder flags, optimization profiles, the precision
  route, notes and errors).

:mod:`maskrt.backends.trt.api` carries a plan out; :mod:`maskrt.backends.trt.build` ties the two together.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import asdict, dataclass, field
from typing import Optional

from maskrt.core.environment import file_sha256
from maskrt.core.errors import MaskrtError
from maskrt.core.onnxfile import graph_io, load_onnx, metadata_props
from maskrt.core.parsing import parse_memory
from maskrt.plugins import spec

TENSORRT_MISSING = "TensorRT is not installed: pip install maskrt[gpu] (needs an NVIDIA GPU and driver)"

#: TensorRT major versions maskrt's TensorRT code is written for (checked against their API surfaces).
SUPPORTED_MAJORS = (10, 11)
PRECISIONS = ("fp32", "fp16")  # what --precision may ask for
_QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
OPTIMIZATION_LEVELS = range(0, 6)  # TensorRT's builder optimization levels (default 3)

DEFAULT_MIN_BATCH = 1
DEFAULT_MAX_BATCH = 8


@dataclass
class BuildOptions:
    """What ``maskrt build`` was asked for. ``precision`` None: the ONNX's own precision."""

    precision: Optional[str] = None
    workspace: Optional[object] = None  # bytes, or text for maskrt.core.parsing.parse_memory
    min_batch: Optional[int] = None
    opt_batch: Optional[int] = None
    max_batch: Optional[int] = None
    timing_cache: Optional[str] = None
    optimization_level: Optional[int] = None
    plugins: Optional[str] = None
    min_shape: Optional[tuple] = None  # (H, W) of a dynamic-size graph's profile; default: the export's bounds
    opt_shape: Optional[tuple] = None
    max_shape: Optional[tuple] = None
    tf32: bool = False  # let fp32 layers use TF32 (TensorRT's default; maskrt's fp32 means fp32)
    verbose: bool = False

    def batch_given(self) -> bool:
        return any(v is not None for v in (self.min_batch, self.opt_batch, self.max_batch))

    def check(self) -> list[str]:
        """Problems that do not depend on the model or the TensorRT version (empty when fine)."""
        errors = []
        if self.precision is not None and self.precision not in PRECISIONS:
            errors.append(f"--precision must be fp32 or fp16, got {self.precision!r} (INT8 comes from a Q/DQ export: "
                          "`maskrt export --precision int8`, then build that file)")
        if self.workspace is not None:
            try:
                parse_memory(self.workspace, "--workspace")
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
    precision: str = "fp32"  # int8 when it has Q/DQ nodes, else from maskrt metadata, else fp16 for fp16 weights
    plugin_nodes: int = 0  # maskrt TensorRT plugin nodes
    data_dependent: int = 0  # nodes with data-dependent output shapes (NonMaxSuppression, NonZero)
    metadata: dict = field(default_factory=dict)  # maskrt metadata_props
    sha256: str = ""
    size_bytes: int = 0

    @property
    def dynamic_inputs(self) -> dict:
        return {n: v for n, v in self.inputs.items() if any(d is None for d in v["shape"])}


def inspect_onnx(path: str) -> OnnxInfo:
    """Read an .onnx file (MaskrtError when it is missing or unreadable) into an :class:`OnnxInfo`."""
    proto = load_onnx(os.fspath(path))
    graph_inputs, graph_outputs = graph_io(proto)
    inputs = {n: {"dtype": s.dtype, "shape": list(s.shape)} for n, s in graph_inputs.items()}
    outputs = {n: {"dtype": s.dtype, "shape": list(s.shape)} for n, s in graph_outputs.items()}
    props = metadata_props(proto)
    precision = props.get("precision")
    if any(n.op_type in _QDQ_OPS for n in proto.graph.node):
        precision = "int8"
    elif precision not in PRECISIONS:
        fp16 = sum(1 for t in proto.graph.initializer if t.data_type == 10)
        fp32 = sum(1 for t in proto.graph.initializer if t.data_type == 1)
        precision = "fp16" if fp16 > fp32 else "fp32"
    plugins = sum(1 for n in proto.graph.node if n.op_type == spec.PLUGIN_NAME)
    dependent = sum(1 for n in proto.graph.node if n.op_type in ("NonMaxSuppression", "NonZero"))
    return OnnxInfo(path=os.fspath(path), inputs=inputs, outputs=outputs, precision=precision, plugin_nodes=plugins,
                    data_dependent=dependent,
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
    "onnx-types" (a strongly typed network that keeps the export's own types: an fp16 export, or an int8 one
    whose explicit Q/DQ say where int8 runs).
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
    tf32: bool = False
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
    if info.precision == "int8":
        # Explicit quantization: the Q/DQ nodes fix where int8 runs, so the network is built strongly typed on
        # 10.x and 11.x alike, with no precision builder flag (TensorRT's "Explicit Quantization" guide: "Use
        # explicit quantization with Strong Typing. Precision-control build flags are not required and should
        # not be specified"; the INT8 flag and calibrators are deprecated in 10.x and gone in 11.x).
        if options.precision is not None:
            errors.append(f"{name} is an int8 export (explicit Q/DQ): its precision is in its types; drop "
                          f"--precision {options.precision} (or build the fp32 export)")
        precision, route, strongly_typed = "int8", "onnx-types", True
    elif info.precision == "fp16":
        if precision == "fp32":
            errors.append(f"{name} is an fp16 export (its weights and types are fp16): --precision fp32 needs an "
                          "fp32 export (`maskrt export --precision fp32`)")
        route, strongly_typed = "onnx-types", True
    elif precision == "fp16":
        if rules is not None and rules.fp16_builder_flag:
            route, builder_flags = "builder-flag", ("FP16",)
            notes.append("fp16 from the builder flag (deprecated since TensorRT 10.12, gone in 11): TensorRT picks "
                         "fp16 kernels where they are faster, on the fp32 graph; an fp16 export (`maskrt export "
                         "--precision fp16`, built strongly typed) keeps box decoding and NMS scores in fp32 by "
                         "construction")
        elif rules is not None:
            errors.append(f"TensorRT {trt_version} builds strongly typed networks only (no fp16 builder flag): fp16 "
                          f"comes from an fp16 ONNX; {name} is fp32: export with `maskrt export --precision fp16` "
                          "and build that file")
    if rules is not None:
        if rules.always_strongly_typed:
            strongly_typed = True  # nothing to request: the flag is deprecated and ignored
        elif strongly_typed and rules.strongly_typed_flag:
            network_flags = ("STRONGLY_TYPED",)

    # one optimization profile over the batch and, for a dynamic-size export, the image height and width
    profiles = []
    dynamic = info.dynamic_inputs
    if dynamic:
        spatial = _spatial_profile(info, options, errors)
        unknown = {n: v["shape"] for n, v in dynamic.items()
                   if any(d is None for d in v["shape"][1:]) and not (n == "images" and spatial is not None)}
        batch_dynamic = any(v["shape"] and v["shape"][0] is None for v in dynamic.values())
        lo = options.min_batch or DEFAULT_MIN_BATCH
        hi = options.max_batch or max(DEFAULT_MAX_BATCH, lo, options.opt_batch or 0)
        opt = options.opt_batch or lo
        if not batch_dynamic:
            lo = opt = hi = next(iter(info.inputs.values()))["shape"][0]
        if unknown:
            n, shape = next(iter(unknown.items()))
            errors.append(f"input {n!r} of {name} has dynamic dimensions maskrt build cannot bound "
                          f"({_shape_text(shape)}): export with `maskrt export` (--dynamic-batch, --dynamic-size)")
        elif lo > hi:
            errors.append(f"--min-batch {lo} is larger than --max-batch {hi}")
        elif not lo <= opt <= hi:
            errors.append(f"--opt-batch {opt} must lie between --min-batch {lo} and --max-batch {hi}")
        elif spatial is not None or "images" not in dynamic or not any(d is None for d in dynamic["images"]["shape"][1:]):
            profile = {}
            for n, v in dynamic.items():
                shapes = []
                for b, hw in zip((lo, opt, hi), spatial or (None, None, None)):
                    shape = [b if v["shape"][0] is None else v["shape"][0], *v["shape"][1:]]
                    if n == "images" and hw is not None:
                        shape[2], shape[3] = hw
                    shapes.append(tuple(shape))
                profile[n] = tuple(shapes)
            profiles.append(profile)
            kind = " and size" if batch_dynamic and spatial is not None else ""
            kind = ("dynamic batch" + kind) if batch_dynamic else "dynamic size"
            what = f"batch min {lo} / opt {opt} / max {hi}" if batch_dynamic else f"batch {lo}"
            if spatial is not None:
                what += "; height x width " + " / ".join(f"{k} {h}x{w}" for k, (h, w) in zip(("min", "opt", "max"), spatial))
            notes.append(f"{kind}: one optimization profile, {what}")
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

    if options.timing_cache is not None and options.optimization_level == 0:
        notes.append("--timing-cache is not used at --optimization-level 0 (TensorRT does not time tactics there)")
    workspace = None
    if options.workspace is not None:
        try:
            workspace = parse_memory(options.workspace, "--workspace")
        except MaskrtError:
            pass  # already in errors
    return BuildPlan(trt_version=str(trt_version), trt_major=major, precision=precision, precision_route=route,
                     strongly_typed=strongly_typed, network_flags=network_flags, builder_flags=builder_flags,
                     profiles=profiles, workspace_bytes=workspace, optimization_level=options.optimization_level,
                     timing_cache=options.timing_cache, plugin_library=options.plugins, tf32=options.tf32,
                     verbose=options.verbose,
                     notes=notes, errors=_unique(errors))


def _spatial_profile(info: OnnxInfo, options: BuildOptions, errors: list) -> Optional[tuple]:
    """(min, opt, max) (H, W) for a dynamic-size graph's ``images``: the options, else the export's bounds from
    its maskrt metadata; None when ``images`` has a fixed size (or its bounds are unknown: an error then)."""
    images = info.inputs.get("images")
    if not images or len(images["shape"]) != 4 or (images["shape"][2] is not None and images["shape"][3] is not None):
        return None
    meta = info.metadata

    def from_meta(key):
        try:
            value = json.loads(meta.get(key) or "null")
        except ValueError:
            return None
        return (int(value[0]), int(value[1])) if value else None

    lo = tuple(options.min_shape) if options.min_shape else from_meta("min_input_size")
    opt = tuple(options.opt_shape) if options.opt_shape else from_meta("input_size")
    hi = tuple(options.max_shape) if options.max_shape else from_meta("max_input_size")
    if not (lo and opt and hi):
        errors.append(f"{os.path.basename(info.path)} has a dynamic height and width without maskrt's bounds: give "
                      "--min-shape, --opt-shape and --max-shape (HxW)")
        return None
    if not (lo[0] <= opt[0] <= hi[0] and lo[1] <= opt[1] <= hi[1]):
        errors.append(f"the height x width profile must have min <= opt <= max, got {lo[0]}x{lo[1]} / "
                      f"{opt[0]}x{opt[1]} / {hi[0]}x{hi[1]}")
        return None
    return lo, opt, hi


def _unique(items: list) -> list:
    out = []
    for i in items:
        if i not in out:
            out.append(i)
    return out


def _shape_text(shape) -> str:
    return "x".join("?" if d is None or (isinstance(d, int) and d < 0) else str(d) for d in shape)


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


class CheckFailed(MaskrtError):
    """``maskrt check`` found errors in the graph before TensorRT was imported; ``lines`` holds one line each."""

    def __init__(self, message: str, lines: list[str]):
        super().__init__(message)
        self.lines = list(lines)


def build_batch_limit(info: OnnxInfo, options: BuildOptions) -> int:
    """The largest batch an engine of ``info`` built with ``options`` takes: the fixed batch of a fixed-batch
    graph, else the profile's maximum."""
    images = info.inputs.get("images") or next(iter(info.inputs.values()), None)
    fixed = images["shape"][0] if images and images["shape"] else None
    if isinstance(fixed, int) and fixed > 0:
        return fixed
    lo = options.min_batch or DEFAULT_MIN_BATCH
    return options.max_batch or max(DEFAULT_MAX_BATCH, lo, options.opt_batch or 0)


class OnnxParseError(MaskrtError):
    """TensorRT's ONNX parser refused the graph; ``lines`` holds one line per parser error."""

    def __init__(self, message: str, lines: list[str]):
        super().__init__(message)
        self.lines = list(lines)


