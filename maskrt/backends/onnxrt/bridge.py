"""Run a ``target="tensorrt"`` export in ONNX Runtime: the plugin nodes become Python custom ops.

ONNX Runtime has no kernel for the maskrt TensorRT plugin node. This bridge uses onnxruntime-extensions'
Python custom ops (an optional dependency: ``pip install onnxruntime-extensions``):

1. :func:`bridge_model` returns a copy of the model in which every plugin node is rewritten for
   onnxruntime-extensions: its domain becomes ``ai.onnx.contrib`` (the only domain whose ops the extensions
   library resolves to Python functions), its op type names the number of feature maps
   (``MaskrtMultilevelRoIAlign_L4``: a Python custom op has a fixed list of typed inputs), and its attributes
   are folded into one string attribute ``config`` (JSON; the extensions library has no float-list
   attributes). Python custom ops take no float16, so float16 inputs reach the op through ``Cast`` nodes
   and the output leaves through one; the op converts them back (exactly) and computes in the original dtypes,
   so the results are those of the float16 plugin. The file itself is never changed.
2. The matching Python ops are declared once per process. Each calls the host (CPU) twin of the CUDA kernel
   through ctypes when its library is built (``maskrt plugins build``), else the PyTorch reference
   :func:`maskrt.ops.poolers.multilevel_roi_align` (the same numbers, see ``tests/plugins``).
3. :func:`prepare_session` registers the extensions library with the session options and returns the rewritten
   model's bytes; :func:`make_session` does both and opens the ``InferenceSession``.

The bridged op runs on the CPU whatever the execution providers; it is for checking and for machines without
TensorRT, not for speed.
"""

from __future__ import annotations

import json
import os
import threading

from maskrt.core.errors import MaskrtError
from maskrt.plugins import spec

BRIDGE_DOMAIN = "ai.onnx.contrib"
BACKENDS = ("auto", "host", "torch")

_LOCK = threading.Lock()
_DECLARED: set[str] = set()

# ONNX elem_type -> numpy dtype name
_DTYPES = {1: "float32", 10: "float16"}


def _import_extensions():
    try:
        import onnxruntime_extensions
    except ImportError as e:
        raise MaskrtError(
            "running a TensorRT-target model in onnxruntime needs onnxruntime-extensions: pip install "
            "onnxruntime-extensions (or maskrt[test]); or export with the default target (portable)"
        ) from e
    return onnxruntime_extensions


def needs_bridge(model) -> bool:
    """True when ``model`` (a ModelProto) holds maskrt plugin nodes that ONNX Runtime cannot run by itself."""
    return any(n.op_type == spec.PLUGIN_NAME for n in model.graph.node)


def _load(model):
    import onnx

    if isinstance(model, onnx.ModelProto):
        return model
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    path = os.fspath(model)
    if not os.path.isfile(path):
        raise MaskrtError(f"model not found: {path}")
    return onnx.load(path)


def _attributes(node) -> dict:
    import onnx

    values = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in values.items()}


def _elem_types(model) -> dict[str, int]:
    import onnx

    inferred = onnx.shape_inference.infer_shapes(model)
    graph = inferred.graph
    types = {}
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        if vi.type.HasField("tensor_type") and vi.type.tensor_type.elem_type:
            types[vi.name] = vi.type.tensor_type.elem_type
    for init in graph.initializer:
        types[init.name] = init.data_type
    return types


def resolve_backend(backend: str = "auto") -> str:
    """"host" (the C++ host twin) or "torch" (the PyTorch reference) for ``backend`` "auto", "host" or "torch"."""
    if backend not in BACKENDS:
        raise MaskrtError(f"bridge backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch":
        return "torch"
    from maskrt.plugins.library import host_available, host_library

    if backend == "host":
        host_library()  # MaskrtError with the build hint when missing
        return "host"
    return "host" if host_available() else "torch"


def bridge_model(model, backend: str = "auto"):
    """A copy of ``model`` with its plugin nodes rewritten as onnxruntime-extensions Python ops (declared here).

    Args:
        model: ModelProto, serialized bytes or a path.
        backend: what the ops call: "host" (C++ host twin), "torch" (PyTorch reference) or "auto" (host when
            its library is built, else torch).
    """
    import onnx

    _import_extensions()
    chosen = resolve_backend(backend)
    source = _load(model)
    out = onnx.ModelProto()
    out.CopyFrom(source)
    types = _elem_types(out)
    rewritten = 0
    nodes = []
    for node in out.graph.node:
        if node.op_type != spec.PLUGIN_NAME:
            nodes.append(node)
            continue
        attrs = _attributes(node)
        version = str(attrs.get("plugin_version", spec.PLUGIN_VERSION))
        if version != spec.PLUGIN_VERSION:
            raise MaskrtError(f"node {node.name}: plugin version {version} is not supported (this maskrt has "
                              f"{spec.PLUGIN_VERSION})")
        roi_type = types.get(node.input[0], 1)
        feature_type = types.get(node.input[1], 1) if len(node.input) > 1 else 1
        if roi_type not in _DTYPES or feature_type not in _DTYPES:
            raise MaskrtError(f"node {node.name}: inputs must be float32 or float16")
        levels = len(node.input) - 1
        op_type = f"{spec.PLUGIN_NAME}_L{levels}"
        _declare(op_type, levels)
        config = {
            "output_height": int(attrs["output_height"]),
            "output_width": int(attrs["output_width"]),
            "sampling_ratio": int(attrs.get("sampling_ratio", 2)),
            "aligned": bool(attrs.get("aligned", 0)),
            "mode": str(attrs.get("mode", "avg")),
            "canonical_scale": int(attrs.get("canonical_scale", 224)),
            "canonical_level": int(attrs.get("canonical_level", 4)),
            "scales": [float(s) for s in attrs["scales"]],
            "backend": chosen,
            "feature_dtype": _DTYPES[feature_type],
            "roi_dtype": _DTYPES[roi_type],
        }
        del node.attribute[:]
        node.attribute.append(onnx.helper.make_attribute("config", json.dumps(config)))
        node.op_type = op_type
        node.domain = BRIDGE_DOMAIN
        for i, name in enumerate(node.input):
            if types.get(name, 1) != 1:
                cast = f"{name}__maskrt_bridge_f32"
                nodes.append(onnx.helper.make_node("Cast", [name], [cast], to=1, name=f"{node.name}/cast_in_{i}"))
                node.input[i] = cast
        nodes.append(node)
        if feature_type != 1:
            final = node.output[0]
            node.output[0] = f"{final}__maskrt_bridge_f32"
            nodes.append(onnx.helper.make_node("Cast", [node.output[0]], [final], to=feature_type,
                                               name=f"{node.name}/cast_out"))
        rewritten += 1
    del out.graph.node[:]
    out.graph.node.extend(nodes)
    if rewritten:
        imports = [o for o in out.opset_import if o.domain not in (spec.ONNX_DOMAIN, BRIDGE_DOMAIN)]
        del out.opset_import[:]
        out.opset_import.extend(imports)
        out.opset_import.append(onnx.helper.make_opsetid(BRIDGE_DOMAIN, 1))
    return out


def _declare(op_type: str, levels: int) -> None:
    """Declare the onnxruntime-extensions Python op ``op_type`` (float32 in and out; once per process)."""
    with _LOCK:
        if op_type in _DECLARED:
            return
        import numpy as np

        ext = _import_extensions()
        from onnxruntime_extensions import PyCustomOpDef

        def compute(rois, *features, config):
            return run_plugin(json.loads(config), rois, features).astype(np.float32)

        compute.__name__ = op_type
        ext.onnx_op(op_type=op_type, inputs=[PyCustomOpDef.dt_float] * (levels + 1), outputs=[PyCustomOpDef.dt_float],
                    attrs={"config": PyCustomOpDef.dt_string})(compute)
        _DECLARED.add(op_type)


def run_plugin(config: dict, rois, features):
    """What a bridged plugin node computes: numpy arrays in, a numpy (K, C, PH, PW) array out.

    Inputs are converted to ``config["feature_dtype"]`` / ``config["roi_dtype"]`` first (exact for values that
    came from those dtypes); the result has the feature dtype.
    """
    import numpy as np
    import torch

    feature_dtype = np.dtype(config.get("feature_dtype", "float32"))
    roi_dtype = np.dtype(config.get("roi_dtype", "float32"))
    maps = [torch.from_numpy(np.ascontiguousarray(f, dtype=feature_dtype)) for f in features]
    boxes = torch.from_numpy(np.ascontiguousarray(rois, dtype=roi_dtype))
    size = (config["output_height"], config["output_width"])
    args = {key: config[key] for key in ("sampling_ratio", "aligned", "mode", "canonical_scale", "canonical_level")}
    if config.get("backend") == "host":
        from maskrt.plugins.library import multilevel_roi_align_host

        out = multilevel_roi_align_host(maps, boxes, config["scales"], size, **args)
    else:
        from maskrt.ops.poolers import multilevel_roi_align

        out = multilevel_roi_align(maps, boxes, size, scales=config["scales"], **args)
    return out.numpy()


def prepare_session(model, sess_options=None, backend: str = "auto"):
    """(model bytes, session options) ready for ``onnxruntime.InferenceSession`` for a model with plugin nodes.

    Models without plugin nodes come back unchanged (serialized) with ``sess_options`` as given (a new
    ``SessionOptions`` when None). With plugin nodes, the rewritten model (:func:`bridge_model`) and the options
    with onnxruntime-extensions' library registered.
    """
    import onnxruntime as ort

    proto = _load(model)
    options = sess_options if sess_options is not None else ort.SessionOptions()
    if not needs_bridge(proto):
        return proto.SerializeToString(), options
    ext = _import_extensions()
    bridged = bridge_model(proto, backend)
    options.register_custom_ops_library(ext.get_library_path())
    return bridged.SerializeToString(), options


def make_session(model, sess_options=None, providers: list | None = None, backend: str = "auto", **kwargs):
    """An ``onnxruntime.InferenceSession`` for ``model`` (path, bytes or ModelProto), bridged when it needs it."""
    import onnxruntime as ort

    data, options = prepare_session(model, sess_options, backend)
    return ort.InferenceSession(data, options, providers=providers or ["CPUExecutionProvider"], **kwargs)
