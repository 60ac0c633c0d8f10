"""The conformance rules: what TensorRT's ONNX parser and layers do with a graph, each rule citing its source.

A rule is a function ``(graph, context) -> findings`` registered with :func:`rule`, which records its id, title,
the TensorRT versions it applies to and its source (a header and line, an importer, a documentation table). The
sources were read at the NVIDIA/TensorRT tags v10.16 (52399f55) and v11.1 (82d1dca8) and at the onnx-tensorrt
commits those tags pin as ``parsers/onnx`` (10.16: 6bde6596, 11.1: 7c51a63a); where NVIDIA's documents disagree,
the rule says which one it follows.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from maskrt.check.graph import DEFAULT_DOMAINS, Graph
from maskrt.check.operators import OPSET_RANGE, UNSUPPORTED, supported
from maskrt.check.operators import SOURCE as OPERATORS_MD
from maskrt.plugins import spec

ERROR, WARNING, INFO = "error", "warning", "info"

#: Largest TopK K TensorRT accepts.
TOPK_MAX_K = 3840
#: Boxes per batch item INMSLayer considers (2000 on SM 5.3 and 6.2).
NMS_CANDIDATES = 5000
#: NMS output rows (per image) above which the allocation bound is worth a warning.
NMS_ROWS_WARNING = 100_000


@dataclass
class Context:
    """What the rules are checked for: TensorRT ``major`` (10 or 11), whether the build is strongly typed, the
    largest batch and the sizes of other named dimensions."""

    major: int
    strongly_typed: bool
    max_batch: int
    sizes: dict = field(default_factory=dict)


@dataclass
class Finding:
    rule: str
    severity: str
    node: str
    message: str  # what TensorRT would do
    fix: str = ""
    versions: tuple = ()

    def to_dict(self) -> dict:
        return {"rule": self.rule, "severity": self.severity, "node": self.node, "message": self.message,
                "fix": self.fix, "versions": list(self.versions)}


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    source: str
    check: Callable
    majors: tuple = (10, 11)


RULES: list[Rule] = []


def rule(id: str, title: str, source: str, majors: tuple = (10, 11)):
    """Register a rule function ``(graph, context) -> list[Finding-like tuples]``."""

    def register(function):
        RULES.append(Rule(id, title, source, function, majors))
        return function

    return register


def _f(severity, node, message, fix=""):
    return (severity, node, message, fix)


FLOATS = {"FP32", "FP16", "BF16"}
ELEMENTWISE = ("Add", "Sub", "Mul", "Div", "Pow", "Max", "Min", "Mean", "Sum", "Equal", "Greater", "GreaterOrEqual",
               "Less", "LessOrEqual", "And", "Or", "Xor", "PRelu")


# -- the operator table ---------------------------------------------------------------------------------------------
@rule("opset", "the default-domain opset is one the parser imports", OPERATORS_MD + ", first paragraph: opset 9 to 24")
def _opset(g: Graph, ctx: Context):
    lo, hi = OPSET_RANGE
    if not lo <= g.opset <= hi:
        yield _f(ERROR, "(model)", f"the parser imports opsets {lo} to {hi}; this model is opset {g.opset}",
                 "convert it with onnx.version_converter (maskrt export --opset 16..22)")


@rule("operator", "every operator has an importer, or is a plugin", OPERATORS_MD + ", Operator Support Matrix; "
      "onnx-tensorrt FallbackPluginImporter (10.16)")
def _operators(g: Graph, ctx: Context):
    for node in g.nodes:
        if node.op_type == spec.PLUGIN_NAME:
            continue  # the maskrt plugin rule
        default = (node.domain or "") in DEFAULT_DOMAINS
        if default and node.op_type in UNSUPPORTED:
            yield _f(ERROR, g.label(node), f"{node.op_type} is not supported by TensorRT's ONNX parser",
                     "replace it with supported operators before building")
        elif supported(node.op_type, ctx.major) is None:
            version = g.attr(node, "plugin_version", "1")
            namespace = g.attr(node, "plugin_namespace", None)
            where = f"namespace {namespace!r}" if namespace is not None else f"namespace '' or {node.domain!r}"
            yield _f(WARNING if not default else ERROR, g.label(node),
                     f"no importer for {node.domain + '::' if node.domain else ''}{node.op_type}: the parser looks for "
                     f"a plugin creator named {node.op_type!r}, version {version!r}, {where}, and fails without one",
                     "load the plugin library that registers it before parsing (or replace the operator)")


_DATA_INPUT = {"Where": 1, "Cast": 0, "ConstantOfShape": None, "Constant": None, "Range": 0, "Shape": 0, "Size": 0}


@rule("operator-type", "operators get the tensor types their importer supports", OPERATORS_MD + ", Supported Types "
      "column and its notes (DOUBLE narrowed to FLOAT)")
def _operator_types(g: Graph, ctx: Context):
    for node in g.nodes:
        if (node.domain or "") not in DEFAULT_DOMAINS or not node.input:
            continue
        types = supported(node.op_type, ctx.major)
        index = _DATA_INPUT.get(node.op_type, 0)
        if types is None or index is None or index >= len(node.input) or not node.input[index]:
            continue
        dtype = g.dtype(node.input[index])
        if dtype is None or dtype in types:
            continue
        if dtype == "DOUBLE":
            yield _f(WARNING, g.label(node), f"{node.op_type} reads a DOUBLE tensor: TensorRT computes it in FLOAT "
                     "(values clamped to +-FLT_MAX)", "cast to float32 in the model")
        elif dtype == "UINT8" and node.op_type == "Cast":
            continue  # the uint8 rule judges where uint8 may go
        elif dtype in ("INT8", "FP8", "INT4", "FP4") and node.op_type != "DequantizeLinear":
            yield _f(ERROR, g.label(node), f"{node.op_type} reads {dtype}: TensorRT takes quantized types only "
                     "through DequantizeLinear", "dequantize before this operator")
        else:
            yield _f(ERROR, g.label(node), f"{node.op_type} does not take {dtype} in TensorRT (supported: "
                     f"{', '.join(types)})", f"cast its input to one of {', '.join(types)}")


# -- inputs and outputs ---------------------------------------------------------------------------------------------
@rule("uint8", "uint8 only as network input or output, converted to float first",
      OPERATORS_MD + " type notes; NvInferRuntimeBase.h DataType::kUINT8 (10.16 l.162-174, 11.1 l.165-177); "
      "onnx-tensorrt ModelImporter parseNode (10.16): no UINT8 intermediate tensors")
def _uint8(g: Graph, ctx: Context):
    for inp in g.inputs:
        if g.dtype(inp.name) != "UINT8":
            continue
        for node in g.consumers.get(inp.name, []):
            to = g.attr(node, "to") if node.op_type == "Cast" else None
            if to not in (1, 10):
                yield _f(ERROR, g.label(node), f"uint8 input {inp.name!r} feeds {node.op_type}: TensorRT converts "
                         "uint8 network inputs only to FLOAT or HALF", "insert Cast(to=FLOAT) right after the input")
    for node in g.nodes:
        if node.op_type == "Constant":
            continue
        for out in node.output:
            if out and g.dtype(out) == "UINT8" and out not in g.output_names:
                yield _f(ERROR, g.label(node), f"{node.op_type} produces a uint8 intermediate tensor {out!r}: TensorRT "
                         "refuses uint8 inside the network", "compute in int32 or float and cast at the edges")


@rule("int64-io", "int64 inputs and outputs need int64 buffers", "onnx-tensorrt docs/Changelog.md, 9.0: models "
      "with INT64 I/O require INT64 bindings; ModelImporter importInputs (10.16)")
def _int64_io(g: Graph, ctx: Context):
    for v in list(g.inputs) + list(g.outputs):
        if g.dtype(v.name) == "INT64":
            yield _f(INFO, v.name, f"{v.name!r} is int64: the engine binding is int64 (TensorRT keeps int64 since 9.0)",
                     "give it int64 buffers (maskrt's runners do)")


# -- TopK -----------------------------------------------------------------------------------------------------------
@rule("topk-k", f"TopK K at most {TOPK_MAX_K}, at the largest batch",
      "NvInfer.h ITopKLayer::setK and INetworkDefinition::addTopK (10.16 l.3659 and 8458; 11.1 l.3448 and 8595: "
      "\"values up to 3840\"); operators.md TopK row (\"less than 3840\")")
def _topk_k(g: Graph, ctx: Context):
    for node in g.of_type("TopK"):
        out = g.shape(node.output[0])
        rank = len(out) if out else None
        axis = g.attr(node, "axis", -1)
        k = None
        if out:
            axis_index = axis % rank if rank else axis
            if 0 <= axis_index < rank:
                k = g.dim(out[axis_index], {"batch": ctx.max_batch, **ctx.sizes})
        if k is None and len(node.input) > 1:
            value = g.const(node.input[1])
            k = int(value.reshape(-1)[0]) if value is not None and value.size else None
        if k is None:
            yield _f(WARNING, g.label(node), f"TopK's K could not be worked out from shapes (it depends on data): "
                     f"TensorRT fails at run time if it exceeds {TOPK_MAX_K}", "bound K by a constant")
        elif k > TOPK_MAX_K:
            yield _f(ERROR, g.label(node), f"TopK K = {k} at batch {ctx.max_batch}: TensorRT supports K up to "
                     f"{TOPK_MAX_K}", "select within smaller groups (per image), or lower the batch / the count")
        elif k == TOPK_MAX_K:
            yield _f(WARNING, g.label(node), f"TopK K = {k}: NvInfer.h allows it, operators.md asks for less than "
                     f"{TOPK_MAX_K}", "keep K below 3840")


@rule("topk-attributes", "TopK sorted, on one of the last four axes", "operators.md TopK row (sorted must be 1); "
      "NvInfer.h addTopK reduceAxes (10.16 l.8472; 11.1 l.8609): one of the last four dimensions")
def _topk_attributes(g: Graph, ctx: Context):
    for node in g.of_type("TopK"):
        if g.attr(node, "sorted", 1) != 1:
            yield _f(ERROR, g.label(node), "TopK with sorted=0: TensorRT always sorts and the parser expects "
                     "sorted=1", "export with sorted=1")
        shape = g.shape(node.input[0])
        if shape and len(shape) > 4:
            axis = g.attr(node, "axis", -1) % len(shape)
            if axis < len(shape) - 4:
                yield _f(ERROR, g.label(node), f"TopK over axis {axis} of a rank-{len(shape)} tensor: TensorRT reduces "
                         "one of the last four axes only", "transpose or reshape first")


# -- NonMaxSuppression ------------------------------------------------------------------------------------------------
@rule("nms", "NonMaxSuppression: output bound and candidate limit",
      "NvInfer.h INMSLayer (10.16 l.6347-6431; 11.1 l.6185-6269): output rows bounded by batch x classes x "
      "min(boxes, max_output_boxes_per_class) when that is constant; only the 5000 (2000 on SM 5.3/6.2) best "
      "boxes per batch item are considered; onnx-tensorrt NonMaxSuppression importer (10.16)")
def _nms(g: Graph, ctx: Context):
    sizes = {"batch": ctx.max_batch, **ctx.sizes}
    for node in g.of_type("NonMaxSuppression"):
        label = g.label(node)
        boxes, scores = g.shape(node.input[0]), g.shape(node.input[1]) if len(node.input) > 1 else None
        if boxes is not None and len(boxes) != 3:
            yield _f(ERROR, label, f"boxes of rank {len(boxes)}: the parser needs (batch, boxes, 4)", "reshape to 3-D")
        if g.attr(node, "center_point_box", 0) not in (0, 1):
            yield _f(ERROR, label, "center_point_box must be 0 or 1", "export with 0 (corners) or 1 (centres)")
        batch = g.dim(boxes[0], sizes) if boxes else None
        n = g.dim(boxes[1], sizes) if boxes and len(boxes) > 1 else None
        classes = g.dim(scores[1], sizes) if scores and len(scores) > 1 else None
        cap_value = g.const(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and cap_value is None:
            yield _f(WARNING, label, "max_output_boxes_per_class is computed at run time: TensorRT sizes the output "
                     "for every box of every class", "make it a constant")
        cap = int(cap_value.reshape(-1)[0]) if cap_value is not None and cap_value.size else None
        if n is not None and classes is not None:
            per_class = min(n, cap) if cap is not None else n
            rows = classes * per_class
            if rows > NMS_ROWS_WARNING:
                total = rows * (batch or 1)
                yield _f(WARNING, label, f"TensorRT allocates the selected-indices output for {classes} classes x "
                         f"{per_class} boxes = {rows:,} rows per image ({total:,} at batch {batch or '?'}), and the "
                         "ops after it likewise", "cap max_output_boxes_per_class at what can be kept (e.g. the "
                         "detections per image)")
        if n is not None and n > NMS_CANDIDATES:
            yield _f(WARNING, label, f"up to {n:,} boxes per image: TensorRT considers only the {NMS_CANDIDATES} "
                     "highest-scoring boxes that pass the score threshold (2000 on SM 5.3/6.2), ONNX Runtime all of them; "
                     "results differ when more pass", "keep the candidates that pass the threshold under 5000")


# -- RoiAlign -------------------------------------------------------------------------------------------------------
@rule("roialign", "RoiAlign becomes the ROIAlign_TRT plugin (version 2)",
      "onnx-tensorrt RoiAlign importer and op checker (10.16); TensorRT plugin/roiAlignPlugin/roiAlignPlugin.cpp "
      "(10.16 l.219-247: X fp32/fp16, rois of X's type, batch_indices int32); NvInferPlugin.h initLibNvInferPlugins "
      "(10.16 l.31-38); samples/python/detectron2 build_engine.py l.50, infer.py l.43")
def _roialign(g: Graph, ctx: Context):
    nodes = list(g.of_type("RoiAlign"))
    if nodes:
        yield _f(INFO, g.label(nodes[0]), f"{len(nodes)} RoiAlign node(s) import as TensorRT's ROIAlign_TRT plugin, "
                 "which exists only after the standard plugins are registered (initLibNvInferPlugins / "
                 "trt.init_libnvinfer_plugins) before parsing and before deserialising", "maskrt build and maskrt's "
                 "runtime register them; other tools must too (trtexec does)")
    for node in nodes:
        label = g.label(node)
        if g.attr(node, "sampling_ratio") is None:
            yield _f(ERROR, label, "sampling_ratio is not written: ONNX means 0 (adaptive), the parser uses 1",
                     "write sampling_ratio explicitly")
        if g.opset >= 16:
            mode = g.attr(node, "coordinate_transformation_mode", "half_pixel")
            if mode not in ("half_pixel", "output_half_pixel"):
                yield _f(ERROR, label, f"coordinate_transformation_mode {mode!r} is not supported",
                         "use half_pixel or output_half_pixel")
        if g.attr(node, "mode", "avg") not in ("avg", "max"):
            yield _f(ERROR, label, f"mode {g.attr(node, 'mode')!r} is not supported", "use avg or max")
        x, rois = g.dtype(node.input[0]), g.dtype(node.input[1]) if len(node.input) > 1 else None
        if x is not None and x not in ("FP32", "FP16"):
            yield _f(ERROR, label, f"RoiAlign on {x} features: ROIAlign_TRT takes FP32 or FP16", "cast to float")
        if x is not None and rois is not None and x != rois:
            yield _f(ERROR, label, f"features are {x} and rois {rois}: ROIAlign_TRT needs rois of the features' type",
                     "cast the rois (or the features) so both have one type")


# -- the maskrt plugin ----------------------------------------------------------------------------------------------
_ATTRIBUTE_TYPES = {"INT": 2, "STRING": 3, "FLOATS": 6}


@rule("maskrt-plugin", "maskrt plugin nodes match the creator maskrt builds",
      "onnx-tensorrt FallbackPluginImporter, loadFields (10.16): op_type is the plugin name, plugin_version and "
      "plugin_namespace select the creator, attributes listed by the creator become fields (INT -> kINT32, STRING -> "
      "kCHAR, FLOATS -> kFLOAT32); maskrt/plugins/csrc/tensorrt/mlra_plugin.cpp")
def _maskrt_plugin(g: Graph, ctx: Context):
    for node in g.nodes:
        if node.op_type != spec.PLUGIN_NAME:
            continue
        label = g.label(node)
        attrs = g.attributes(node)
        version = g.attr(node, "plugin_version")
        namespace = g.attr(node, "plugin_namespace")
        if version != spec.PLUGIN_VERSION:
            yield _f(ERROR, label, f"plugin_version {version!r}: the maskrt creator is version {spec.PLUGIN_VERSION!r}",
                     "re-export with this maskrt (maskrt export --target tensorrt)")
        if namespace != spec.PLUGIN_NAMESPACE:
            yield _f(ERROR, label, f"plugin_namespace {namespace!r}: the maskrt creator registers in "
                     f"{spec.PLUGIN_NAMESPACE!r}", "re-export with this maskrt")
        for name, (onnx_type, _) in spec.PLUGIN_FIELDS.items():
            if name not in attrs:
                yield _f(ERROR, label, f"field {name!r} is missing", "re-export with this maskrt")
            elif attrs[name][0] != _ATTRIBUTE_TYPES[onnx_type]:
                yield _f(ERROR, label, f"field {name!r} is not an {onnx_type} attribute: the creator would read it as "
                         "another type", "re-export with this maskrt")
        unknown = sorted(set(attrs) - set(spec.PLUGIN_FIELDS) - {"plugin_version", "plugin_namespace"})
        if unknown:
            yield _f(WARNING, label, f"attributes {unknown} are not fields of the creator: the parser ignores them")
        levels = len(node.input) - 1
        if not 1 <= levels <= spec.MAX_LEVELS:
            yield _f(ERROR, label, f"{levels} feature maps: the plugin takes 1 to {spec.MAX_LEVELS}", "")
        scales = attrs.get("scales", (None, []))[1]
        if scales is not None and len(scales) != levels:
            yield _f(ERROR, label, f"{len(scales)} scales for {levels} feature maps", "re-export with this maskrt")
        rois = g.dtype(node.input[0])
        if rois is not None and rois != "FP32":
            yield _f(ERROR, label, f"rois are {rois}: the plugin takes FP32 rois (box coordinates need fp32 past "
                     "512 px)", "cast the rois to float32")
        maps = {g.dtype(i) for i in node.input[1:]} - {None}
        if len(maps) > 1 or maps - {"FP32", "FP16"}:
            yield _f(ERROR, label, f"feature maps of types {sorted(maps)}: the plugin takes all FP32 or all FP16", "")
    if any(n.op_type == spec.PLUGIN_NAME for n in g.nodes):
        yield _f(INFO, "(model)", "the graph needs maskrt's TensorRT plugin library when parsing and when "
                 "deserialising", "maskrt plugins build; maskrt build finds it (or pass --plugins LIB)")


# -- attribute restrictions -------------------------------------------------------------------------------------------
@rule("constant-inputs", "inputs the parser needs as build-time constants",
      "operators.md rows: ReduceX axes must be an initializer; Squeeze/Unsqueeze axes resolvable to a constant; "
      "CumSum axis a build-time constant; Dropout is_training an initializer")
def _constant_inputs(g: Graph, ctx: Context):
    wanted = {"CumSum": 1, "Squeeze": 1, "Unsqueeze": 1, "Dropout": 2}
    for node in g.nodes:
        if (node.domain or "") not in DEFAULT_DOMAINS:
            continue
        index = wanted.get(node.op_type)
        if node.op_type.startswith("Reduce") and node.op_type in ("ReduceL1", "ReduceL2", "ReduceLogSum",
                                                                  "ReduceLogSumExp", "ReduceMax", "ReduceMean",
                                                                  "ReduceMin", "ReduceProd", "ReduceSum",
                                                                  "ReduceSumSquare"):
            index = 1
        if index is None or index >= len(node.input) or not node.input[index]:
            continue
        if not g.is_constant(node.input[index]):
            yield _f(ERROR, g.label(node), f"{node.op_type}'s input {index} ({node.input[index]!r}) is computed at run "
                     "time; the parser needs a constant", "fold it to an initializer")


@rule("attributes", "attribute values the parser supports",
      "operators.md rows (Resize, MaxPool/AveragePool, ScatterND, Constant); onnx-tensorrt op checkers (10.x)")
def _attributes(g: Graph, ctx: Context):
    for node in g.nodes:
        if (node.domain or "") not in DEFAULT_DOMAINS:
            continue
        label, op = g.label(node), node.op_type
        if op == "Resize":
            mode = g.attr(node, "mode", "nearest")
            if mode not in ("nearest", "linear", "cubic"):
                yield _f(ERROR, label, f"Resize mode {mode!r} is not supported", "use nearest or linear")
            ctm = g.attr(node, "coordinate_transformation_mode", "half_pixel")
            if ctm not in ("half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"):
                yield _f(ERROR, label, f"Resize coordinate_transformation_mode {ctm!r} is not supported", "")
            if ctm == "tf_half_pixel_for_nn" and g.attr(node, "nearest_mode", "round_prefer_floor") != "round_prefer_floor":
                yield _f(ERROR, label, "tf_half_pixel_for_nn needs nearest_mode round_prefer_floor", "")
            if g.attr(node, "antialias", 0):
                yield _f(ERROR, label, "Resize with antialias is not supported", "export without antialiasing")
            if g.attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
                yield _f(ERROR, label, "Resize keep_aspect_ratio_policy other than stretch is not supported", "")
        elif op in ("MaxPool", "AveragePool", "LpPool"):
            shape = g.shape(node.input[0])
            if shape and len(shape) not in (4, 5):
                yield _f(ERROR, label, f"{op} on a rank-{len(shape)} tensor: 2-D or 3-D pooling only", "")
            dilations = g.attr(node, "dilations", None)
            if dilations and any(d != 1 for d in dilations):
                yield _f(ERROR, label, f"{op} dilations {list(dilations)}: must be all ones", "")
            if op == "MaxPool" and len(node.output) > 1 and node.output[1]:
                yield _f(ERROR, label, "MaxPool's Indices output is not supported", "drop the second output")
        elif op == "ScatterND" and g.attr(node, "reduction", "none") != "none":
            yield _f(ERROR, label, f"ScatterND reduction {g.attr(node, 'reduction')!r} is not supported", "")
        elif op == "Constant":
            for name in ("sparse_value", "value_string", "value_strings"):
                if g.attr(node, name) is not None:
                    yield _f(ERROR, label, f"Constant with {name} is not supported", "")


@rule("control-flow", "Loop and If have their own restrictions", "operators.md Loop and If rows")
def _control_flow(g: Graph, ctx: Context):
    for node in g.of_type("Loop"):
        yield _f(WARNING, g.label(node), "Loop: scan outputs must have a static length and loop-carried shapes must "
                 "not change between iterations", "")
    for node in g.of_type("If"):
        yield _f(INFO, g.label(node), "If: both branches must give outputs of the same rank, with different names", "")


@rule("data-dependent", "data-dependent shapes inside the engine",
      "NvInfer.h INMSLayer and INonZeroLayer (data-dependent output extents); NvInferRuntime.h IOutputAllocator "
      "(10.16 l.4181-4257): called during enqueueV3, so the work cannot be captured in a CUDA graph")
def _data_dependent(g: Graph, ctx: Context):
    nodes = [n for n in g.nodes if n.op_type in ("NonMaxSuppression", "NonZero") and (n.domain or "") in DEFAULT_DOMAINS]
    if nodes:
        yield _f(INFO, g.label(nodes[0]), f"{len(nodes)} node(s) with data-dependent output shapes "
                 f"({', '.join(sorted({n.op_type for n in nodes}))}): the engine cannot be replayed from a CUDA graph",
                 "run the engine without --cuda-graph")


# -- strong typing --------------------------------------------------------------------------------------------------
@rule("strong-typing", "in a strongly typed network, inputs of one operation share one type",
      "NvInfer.h NetworkDefinitionCreationFlag::kSTRONGLY_TYPED (10.16 l.12109-12113; 11.1 l.11464-11471: always "
      "on in 11.x); TensorRT operator docs ElementWise and Concatenation (inputs of type T)")
def _strong_typing(g: Graph, ctx: Context):
    if not ctx.strongly_typed:
        return
    for node in g.nodes:
        if (node.domain or "") not in DEFAULT_DOMAINS:
            continue
        op = node.op_type
        if op in ELEMENTWISE or op == "Concat":
            names = [i for i in node.input if i]
        elif op == "Where":
            names = [i for i in node.input[1:3] if i]
        elif op in ("Conv", "ConvTranspose", "Gemm", "MatMul"):
            names = [i for i in node.input[:2] if i]
        else:
            continue
        types = {g.dtype(i) for i in names} - {None}
        if len(types) > 1 and types & FLOATS:
            yield _f(ERROR, g.label(node), f"{op} mixes {', '.join(sorted(types))}: a strongly typed network does not "
                     "convert between them", "insert a Cast so that every input has one type")


# -- Q/DQ -----------------------------------------------------------------------------------------------------------
def _zero_point_problem(g: Graph, node) -> Optional[str]:
    if len(node.input) < 3 or not node.input[2]:
        return None
    zp = g.const(node.input[2])
    if zp is None:
        return "its zero point is computed at run time (it must be a constant)"
    if zp.dtype.kind == "u":
        return f"its zero point is {zp.dtype} (asymmetric); TensorRT quantizes symmetrically to int8"
    if zp.size and (zp != 0).any():
        return "its zero point is not zero (TensorRT supports symmetric quantization only)"
    return None


@rule("qdq", "explicit quantization: symmetric int8, positive constant scales, per-channel weights only",
      "NvInfer.h IQuantizeLayer/IDequantizeLayer (10.16 l.5510-5734; 11.1 l.5333-5559); operators.md Q/DQ rows; "
      "onnx-tensorrt QuantDequantLinearHelper (10.16)")
def _qdq(g: Graph, ctx: Context):
    for node in g.of_type("QuantizeLinear", "DequantizeLinear"):
        label = g.label(node)
        problem = _zero_point_problem(g, node)
        if problem:
            yield _f(ERROR, label, f"{node.op_type}: {problem}", "quantize with symmetric int8 (zero point 0)")
        scale = g.const(node.input[1]) if len(node.input) > 1 else None
        if scale is None:
            yield _f(WARNING, label, f"{node.op_type}: the scale is computed at run time; TensorRT checks it only then",
                     "store scales as initializers")
        elif (scale <= 0).any():
            yield _f(ERROR, label, f"{node.op_type}: scale coefficients must all be positive", "")
        per_channel = scale is not None and scale.size > 1 and not g.is_constant(node.input[0])
        if per_channel and (node.op_type == "QuantizeLinear" or not _rooted_at_weights(g, node.input[0])):
            yield _f(ERROR, label, f"per-channel {node.op_type} of an activation: TensorRT quantizes activations "
                     "per tensor", "use one scale for activations")
        if node.op_type == "QuantizeLinear":
            x = g.dtype(node.input[0])
            if x is not None and x not in FLOATS:
                yield _f(ERROR, label, f"QuantizeLinear of {x}: its input must be FP32, FP16 or BF16", "")


def _rooted_at_weights(g: Graph, name: str) -> bool:
    """True when ``name`` is (a Quantize/Cast of) an initializer: per-channel DQ must be rooted at weights."""
    seen = 0
    while name and seen < 4:
        if g.is_constant(name):
            return True
        node = g.producer.get(name)
        if node is None or node.op_type not in ("QuantizeLinear", "Cast", "Identity"):
            return False
        name, seen = node.input[0], seen + 1
    return False


@rule("qdq-placement", "Q/DQ where TensorRT fuses it: on both inputs of weighted layers, and on residual inputs",
      "TensorRT tools/pytorch-quantization docs tutorials/quant_resnet50.rst l.206-212 (a Q/DQ pair on the residual "
      "input of Add lets the conv fuse with it); tools/tensorflow-quantization docs add_custom_qdq_cases.md l.76-80")
def _qdq_placement(g: Graph, ctx: Context):
    if not any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in g.nodes):
        return
    for node in g.of_type("Conv", "ConvTranspose", "Gemm", "MatMul"):
        fed = [bool(i) and g.producer.get(i) is not None and g.producer[i].op_type == "DequantizeLinear"
               for i in node.input[:2]]
        if any(fed) and not all(fed):
            which = "weights" if fed[0] else "input"
            yield _f(WARNING, g.label(node), f"{node.op_type} has Q/DQ on one input only (its {which} are not "
                     "quantized): it runs in floating point", "quantize both the activation and the weights")
    for node in g.of_type("Add"):
        producers = [g.producer.get(i) for i in node.input[:2]]
        kinds = [p.op_type if p is not None else None for p in producers]
        if "Conv" in kinds and "DequantizeLinear" not in kinds and any(
                p is not None and p.op_type == "Conv" and _conv_quantized(g, p) for p in producers):
            yield _f(INFO, g.label(node), "a quantized Conv feeds this Add whose other input is not quantized: "
                     "TensorRT cannot fuse the Add into the int8 conv", "add a Q/DQ pair on the residual input")


def _conv_quantized(g: Graph, conv) -> bool:
    p = g.producer.get(conv.input[0])
    return p is not None and p.op_type == "DequantizeLinear"


def _output_channel_axis(g: Graph, node) -> Optional[int]:
    """The output-channel axis of a weighted layer's weight tensor (input 1)."""
    if node.op_type == "Conv":
        return 0  # (K, C/group, kh, kw)
    if node.op_type == "ConvTranspose":
        return 1  # (C, K/group, kh, kw)
    if node.op_type == "Gemm":
        return 0 if g.attr(node, "transB", 0) else 1
    if node.op_type == "MatMul":
        shape = g.shape(node.input[1])
        return len(shape) - 1 if shape else None
    return None


@rule("qdq-weights", "quantized weights: int8 per output channel, one scale per channel",
      "TensorRT developer guide, Working with Quantized Types (10.x, 11.0): weights per-tensor or per-channel "
      "along the output-channel (K) axis, activations per-tensor; Explicit Quantization: pre-quantized weights need "
      "an IDequantizeLayer between them and the linear operator; NvInfer.h IDequantizeLayer::setAxis")
def _qdq_weights(g: Graph, ctx: Context):
    for node in g.of_type("Conv", "ConvTranspose", "Gemm", "MatMul"):
        if len(node.input) < 2 or not node.input[1]:
            continue
        dq = g.producer.get(node.input[1])
        if dq is None or dq.op_type != "DequantizeLinear" or not _rooted_at_weights(g, dq.input[0]):
            continue
        label = g.label(node)
        stored = g.dtype(dq.input[0])
        if stored is not None and stored not in ("INT8", "FP32", "FP16", "BF16", "FP8", "INT4", "FP4"):
            yield _f(ERROR, label, f"{node.op_type} weights are stored {stored}: TensorRT's int8 path takes INT8 "
                     "weights", "quantize weights to signed int8")
        scale = g.const(dq.input[1]) if len(dq.input) > 1 else None
        if scale is None or scale.size <= 1:
            continue  # per-tensor: any axis is fine
        shape = g.shape(dq.input[0]) or []
        rank = len(shape)
        axis = g.attr(dq, "axis", 1)
        axis = axis + rank if rank and axis < 0 else axis
        want = _output_channel_axis(g, node)
        if want is not None and axis != want:
            yield _f(ERROR, label, f"{node.op_type} weights are quantized per channel along axis {axis}; TensorRT "
                     f"takes per-channel weight scales along the output-channel axis ({want})",
                     f"quantize the weights along axis {want}")
        elif rank and 0 <= axis < rank and isinstance(shape[axis], int) and shape[axis] != scale.size:
            yield _f(ERROR, label, f"{node.op_type}: {scale.size} weight scales for {shape[axis]} output channels",
                     "one scale per output channel")


# -- dynamic dimensions ---------------------------------------------------------------------------------------------
@rule("dynamic-dims", "every dynamic input dimension needs an optimization profile",
      "NvInfer.h IBuilderConfig::addOptimizationProfile (10.16 l.11418-11430; 11.1 l.10829-10841); NvInferRuntime.h "
      "IOptimizationProfile::setDimensions (10.16 l.2680-2705)")
def _dynamic_dims(g: Graph, ctx: Context):
    for inp in g.inputs:
        shape = g.shape(inp.name) or []
        dynamic = [(i, d) for i, d in enumerate(shape) if not isinstance(d, int) or d <= 0]
        if not dynamic:
            continue
        names = ", ".join(f"{d or '?'} (axis {i})" for i, d in dynamic)
        covered = all(i == 0 or str(d) in ctx.sizes for i, d in dynamic)
        yield _f(INFO if covered else WARNING, inp.name, f"dynamic dimensions {names}: the builder needs min/opt/max "
                 "for each in an optimization profile" + ("" if covered else "; no size was given for some of them"),
                 "maskrt build makes the profiles for batch (and height/width of --dynamic-size exports)")
