"""INT8 by explicit quantization: an fp32 maskrt export in, a QuantizeLinear/DequantizeLinear (Q/DQ) graph out.

TensorRT 10 deprecates implicit INT8 (calibrators, the INT8 builder flag) and TensorRT 11 removes it; what both
build is an ONNX graph whose quantized tensors are spelled out as Q/DQ pairs. This module writes such a graph
with ONNX Runtime's quantizer (``onnxruntime.quantization``, QDQ format):

* only the convolutions and GEMMs of the network are quantized (``Conv``, ``ConvTranspose``, ``Gemm``,
  ``MatMul`` of backbone, FPN, RPN head, box head and mask head): their activation input gets a Q/DQ pair and
  their weights are stored int8 behind a DequantizeLinear, the pattern TensorRT fuses into an int8 kernel.
  RoI Align, box decoding, level assignment, NMS and the score math are other operators and stay float;
* weights per output channel, activations per tensor, both signed int8 with zero point 0 (TensorRT quantizes
  symmetrically);
* activation ranges come from calibration feeds made by the Predictor's own pre-processing
  (:func:`maskrt.inference.predictor.model_feeds`: resize, place on the canvas, and each image's size as the
  graph's ``image_sizes`` input), so the calibrated tensors are the ones inference produces;
* parts of the network can be kept in float (``keep_float``), by the module scope the exporter writes into node
  names (:data:`PART_SCOPES`).

The AP comparison against the fp32 export (the gate of ``maskrt export --precision int8 --dataset``) and the
per-part sensitivity measurement live in :mod:`maskrt.evaluation.int8`, which runs models.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import warnings
from dataclasses import dataclass, field
from typing import Iterable, Optional

from maskrt.core.errors import MaskrtError, MaskrtWarning

#: Operators that are quantized; everything else stays float.
QUANTIZED_OPS = ("Conv", "ConvTranspose", "Gemm", "MatMul")
#: Parts of the network, each a set of module scopes (node-name prefixes the exporter writes).
PART_SCOPES = {
    "stem": ("/backbone/body/conv1/",),
    "layer1": ("/backbone/body/layer1",),
    "layer2": ("/backbone/body/layer2",),
    "layer3": ("/backbone/body/layer3",),
    "layer4": ("/backbone/body/layer4",),
    "fpn": ("/backbone/fpn/",),
    "rpn": ("/rpn/head/",),
    "box_head": ("/roi_heads/box_head/", "/roi_heads/box_predictor/"),
    "mask_head": ("/roi_heads/mask_head/", "/roi_heads/mask_predictor/"),
}
PARTS = tuple(PART_SCOPES)
#: Names that stand for several parts in ``--keep-float``.
PART_GROUPS = {"trunk": ("stem", "layer1", "layer2", "layer3", "layer4"), "backbone": (
    "stem", "layer1", "layer2", "layer3", "layer4", "fpn"), "heads": ("rpn", "box_head", "mask_head")}
METHODS = ("minmax", "percentile", "entropy")
#: The default recipe; benchmarks/int8.py measures it against the others (see README, "INT8").
DEFAULT_METHOD = "minmax"
DEFAULT_KEEP_FLOAT: tuple[str, ...] = ()
DEFAULT_CALIBRATION_COUNT = 64
DEFAULT_PERCENTILE = 99.999


class CalibrationCountWarning(MaskrtWarning):
    """The calibration folder holds fewer images than were asked for; all of them are used."""


@dataclass(frozen=True)
class Int8Recipe:
    """How to quantize: the calibration ``method`` (minmax, percentile, entropy), the parts kept in float and the
    percentile for ``percentile``. Histograms have 2048 bins (entropy: searched in 128 quantized bins)."""

    method: str = DEFAULT_METHOD
    keep_float: tuple[str, ...] = DEFAULT_KEEP_FLOAT
    percentile: float = DEFAULT_PERCENTILE

    def check(self) -> None:
        if self.method not in METHODS:
            raise MaskrtError(f"--calibration-method must be one of {', '.join(METHODS)}, got {self.method!r}")
        unknown = [p for p in self.keep_float if p not in PART_SCOPES]
        if unknown:
            raise MaskrtError(f"unknown part(s) {', '.join(unknown)} in --keep-float; choose from "
                              f"{', '.join(PARTS)} (or {', '.join(PART_GROUPS)})")
        if not 0.0 < self.percentile <= 100.0:
            raise MaskrtError(f"percentile must be in (0, 100], got {self.percentile}")

    @property
    def name(self) -> str:
        keep = f", float {'+'.join(self.keep_float)}" if self.keep_float else ""
        return f"{self.method}{keep}"

    def to_dict(self) -> dict:
        return {"method": self.method, "keep_float": list(self.keep_float),
                "percentile": self.percentile if self.method == "percentile" else None}


def parse_parts(text: Optional[str]) -> tuple[str, ...]:
    """``"layer1,fpn"`` (or group names: trunk, backbone, heads; "none") -> the parts, in :data:`PARTS` order."""
    if text is None or not str(text).strip() or str(text).strip().lower() == "none":
        return ()
    chosen = set()
    for item in str(text).split(","):
        item = item.strip().lower().replace("-", "_")
        if not item:
            continue
        if item in PART_GROUPS:
            chosen.update(PART_GROUPS[item])
        elif item in PART_SCOPES:
            chosen.add(item)
        else:
            raise MaskrtError(f"unknown part {item!r} in --keep-float; choose from {', '.join(PARTS)} "
                              f"(or {', '.join(PART_GROUPS)})")
    return tuple(p for p in PARTS if p in chosen)


def part_of(node_name: str) -> Optional[str]:
    """The part (:data:`PART_SCOPES`) a node belongs to by its name, or None."""
    name = "/" + node_name.lstrip("/")
    if name.startswith("/model/"):
        name = name[len("/model"):]
    for part, scopes in PART_SCOPES.items():
        if any(name.startswith(s) for s in scopes):
            return part
    return None


# -- calibration images ----------------------------------------------------------------------------------------
def calibration_images(folder, count: Optional[int] = DEFAULT_CALIBRATION_COUNT) -> list[str]:
    """The first ``count`` image files of ``folder`` (sorted, searched recursively; None: all).

    MaskrtError (one line) when the folder is missing, not a folder, unreadable or holds no images; a
    :class:`CalibrationCountWarning` with the count when it holds fewer than ``count``.
    """
    from maskrt.data.images import IMAGE_EXTENSIONS

    if folder is None:
        raise MaskrtError("INT8 needs calibration images: give --calibration DIR (a few dozen images like the ones "
                          "the model will see)")
    folder = os.fspath(folder)
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
        raise MaskrtError(f"--calibration-count must be a positive integer, got {count!r}")
    if not os.path.exists(folder):
        raise MaskrtError(f"calibration folder {folder} does not exist; give --calibration DIR with images")
    if not os.path.isdir(folder):
        raise MaskrtError(f"calibration folder {folder} is not a folder; give --calibration DIR with images")
    if not os.access(folder, os.R_OK | os.X_OK):
        raise MaskrtError(f"calibration folder {folder} cannot be read (permission denied)")
    found = []
    errors: list[OSError] = []
    for root, dirs, files in os.walk(folder, onerror=errors.append):
        dirs.sort()
        found += [os.path.join(root, f) for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS)]
    if errors and not found:
        raise MaskrtError(f"calibration folder {folder} cannot be read ({errors[0].strerror or errors[0]})")
    if not found:
        raise MaskrtError(f"calibration folder {folder} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
    if count is not None and len(found) < count:
        warnings.warn(f"calibration folder {folder} holds {len(found)} image(s), fewer than the {count} asked "
                      f"for: calibrating on {len(found)}", CalibrationCountWarning, stacklevel=2)
    return found[:count] if count is not None else found


def _reader(feeds: list[dict]):
    from onnxruntime.quantization import CalibrationDataReader

    class FeedReader(CalibrationDataReader):
        """Hands ONNX Runtime's calibrator one prepared feed after another."""

        def __init__(self):
            self._it = iter(feeds)

        def get_next(self):
            return next(self._it, None)

        def __len__(self):
            return len(feeds)

        def rewind(self):
            self._it = iter(feeds)

    return FeedReader()


# -- the graph ---------------------------------------------------------------------------------------------------
def graph_precision(proto) -> str:
    """"int8" for a graph with Q/DQ or int8 weights, "fp16" for fp16 weights or metadata, else "fp32"."""
    ops = {n.op_type for n in proto.graph.node}
    if ops & {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger",
              "DynamicQuantizeLinear"}:
        return "int8"
    props = {p.key: p.value for p in proto.metadata_props}
    if props.get("precision") in ("fp16", "int8"):
        return props["precision"]
    fp16 = sum(1 for t in proto.graph.initializer if t.data_type == 10)
    fp32 = sum(1 for t in proto.graph.initializer if t.data_type == 1)
    return "fp16" if fp16 > fp32 else "fp32"


def check_fp32_input(proto, source: str = "model") -> None:
    """MaskrtError (one line) unless ``proto`` is an fp32 maskrt export that can be quantized."""
    precision = graph_precision(proto)
    if precision == "int8":
        raise MaskrtError(f"{source} is already quantized (it has Q/DQ or integer operators): quantize the fp32 "
                          "export (`maskrt export --precision fp32`)")
    if precision == "fp16":
        raise MaskrtError(f"{source} is an fp16 export: INT8 calibration needs the fp32 graph (`maskrt export "
                          "--precision fp32`)")
    props = {p.key: p.value for p in proto.metadata_props}
    if "input_size" not in props:
        raise MaskrtError(f"{source} has no maskrt metadata: export it with `maskrt export` before quantizing")
    if props.get("target", "portable") != "portable":
        raise MaskrtError(f"{source} is a TensorRT-target graph (plugin nodes): quantize the portable export")


def quantized_nodes(proto, keep_float: Iterable[str] = ()) -> tuple[list[str], list[str]]:
    """(names of the nodes to quantize, names of quantizable nodes kept float): the :data:`QUANTIZED_OPS` nodes
    of the network's parts, minus those of ``keep_float``."""
    keep = set(keep_float)
    quantize, excluded = [], []
    for node in proto.graph.node:
        if node.op_type not in QUANTIZED_OPS:
            continue
        part = part_of(node.name)
        (quantize if part is not None and part not in keep else excluded).append(node.name)
    return quantize, excluded


@contextlib.contextmanager
def _quiet():
    """ONNX Runtime's quantizer logs advice (pre-processing) at WARNING through the root logger and its histogram
    calibrators print progress: keep both quiet."""
    import io

    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # the calibrators print
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)


@dataclass
class Calibration:
    """Activation ranges computed once for a recipe's method and reused for every part choice (a cache file)."""

    method: str
    path: str
    images: int
    feeds: int = 0
    seconds: float = 0.0
    notes: list = field(default_factory=list)


def quantize_proto(proto, feeds: list[dict], recipe: Int8Recipe = Int8Recipe(), *, work_dir: Optional[str] = None,
                   cache: Optional[str] = None, source: str = "model"):
    """Quantize an fp32 maskrt export (``onnx.ModelProto``) into a Q/DQ graph and return it.

    ``feeds``: calibration inputs (:func:`maskrt.inference.predictor.model_feeds`); ``cache``: a calibration-range file for this
    method, written on first use and read after (the per-part sensitivity reuses one calibration).
    The returned graph keeps the export's metadata with ``precision`` "int8" and the recipe.
    """
    import json

    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from maskrt.export.onnx_export import ir_version_for

    recipe.check()
    check_fp32_input(proto, source)
    if not feeds and not (cache and os.path.isfile(cache)):
        raise MaskrtError("no calibration images")
    nodes, excluded = quantized_nodes(proto, recipe.keep_float)
    if not nodes:
        raise MaskrtError("nothing to quantize: every part is kept in float")
    method = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile,
              "entropy": CalibrationMethod.Entropy}[recipe.method]
    extra = {
        "ActivationSymmetric": True,  # zero point 0: TensorRT's Q/DQ are symmetric
        "WeightSymmetric": True,
        "CalibTensorRangeSymmetric": True,
        "AddQDQPairToWeight": False,  # int8 weights behind a DequantizeLinear (TensorRT folds them)
        "DedicatedQDQPair": False,
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        # Q/DQ on the inputs of the weighted layers only: TensorRT fuses a Conv's output into the next layer's
        # input quantization itself; a Q/DQ on an output that feeds float math (the padding mask's Mul, the
        # residual Add, RoI Align) only adds rounding.
        "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),
        # Biases stay float: TensorRT dequantizes int8 (and fp8/int4) only, never an int32 bias.
        "QuantizeBias": False,
    }
    if recipe.method == "percentile":
        extra["CalibPercentile"] = recipe.percentile
    opset = max((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), default=17)
    with tempfile.TemporaryDirectory(prefix="maskrt-int8-", dir=work_dir) as tmp:
        src = os.path.join(tmp, "fp32.onnx")
        dst = os.path.join(tmp, "int8.onnx")
        onnx.save_model(proto, src)
        with _quiet():
            if recipe.method == "entropy" and not (cache and os.path.isfile(cache)):
                cache = cache or os.path.join(tmp, "calibration-entropy.json")
                _entropy_ranges(src, feeds, cache, tmp)
            quantize_static(
                src, dst, _reader(feeds) if feeds else None, quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS), nodes_to_quantize=nodes, nodes_to_exclude=excluded,
                per_channel=True, reduce_range=False, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                calibrate_method=method, extra_options=extra, calibration_cache_path=cache,
            )
        out = onnx.load(dst)
    out.ir_version = ir_version_for(opset)
    props = {p.key: p.value for p in proto.metadata_props}
    props["precision"] = "int8"
    props["int8_recipe"] = json.dumps(recipe.to_dict())
    del out.metadata_props[:]
    for k, v in props.items():
        out.metadata_props.add(key=k, value=v)
    out.producer_name = proto.producer_name
    out.producer_version = proto.producer_version
    return out


def _entropy_ranges(model_path: str, feeds: list[dict], cache: str, tmp: str) -> None:
    """Entropy (KL) ranges with a 2048-bin histogram searched in 128 quantized bins, written to ``cache``.

    ``quantize_static`` builds its entropy calibrator with 128 histogram bins and 128 quantized bins, which leaves
    the KL search one candidate, the full range: the same ranges as minmax. Calibrating here with TensorRT's
    classic setting (2048 bins) makes ``entropy`` a real choice."""
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    calibrator = create_calibrator(model_path, list(QUANTIZED_OPS),
                                   augmented_model_path=os.path.join(tmp, "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.Entropy,
                                   extra_options={"symmetric": True, "num_bins": 2048, "num_quantized_bins": 128})
    calibrator.collect_data(_reader(feeds))
    save_tensors_data(calibrator.compute_data(), cache)


def qdq_counts(proto) -> dict:
    """Q/DQ nodes per part: {part: {"quantize": n, "dequantize": n, "quantized_ops": n, "float_ops": n}}, plus
    "other" for Q/DQ that feed no part's operator."""
    consumers: dict = {}
    for node in proto.graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    counts = {p: {"quantize": 0, "dequantize": 0, "quantized_ops": 0, "float_ops": 0} for p in (*PARTS, "other")}

    def parts_fed(node, depth=0) -> set:
        found = set()
        for out in node.output:
            for c in consumers.get(out, []):
                if c.op_type in ("QuantizeLinear", "DequantizeLinear") and depth < 2:
                    found |= parts_fed(c, depth + 1)
                elif c.op_type in QUANTIZED_OPS:
                    found.add(part_of(c.name) or "other")
        return found

    for node in proto.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            key = "quantize" if node.op_type == "QuantizeLinear" else "dequantize"
            for part in parts_fed(node) or {"other"}:
                counts[part][key] += 1
    producers = {o: n for n in proto.graph.node for o in n.output}
    for node in proto.graph.node:
        if node.op_type in QUANTIZED_OPS:
            p = producers.get(node.input[0])
            kind = "quantized_ops" if p is not None and p.op_type == "DequantizeLinear" else "float_ops"
            counts[part_of(node.name) or "other"][kind] += 1
    return {k: v for k, v in counts.items() if any(v.values())}


def load_fp32(path: str):
    """Read an fp32 maskrt export for quantization (MaskrtError naming the problem otherwise)."""
    from maskrt.core.onnxfile import load_onnx

    proto = load_onnx(os.fspath(path))
    check_fp32_input(proto, os.fspath(path))
    return proto
