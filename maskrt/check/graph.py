"""A read-only view of an ONNX graph for the conformance rules: producers, consumers, constants, types and
symbolic shapes.

Shapes come from ONNX Runtime's symbolic shape inference (``onnxruntime.tools.symbolic_shape_infer``), which
keeps a dynamic input dimension as its name (``batch``) and carries expressions through shape arithmetic
(``300*batch``); :meth:`Graph.dim` evaluates such an expression for given sizes (the largest batch a build
will allow, say). When symbolic inference cannot run (an operator it does not know), ONNX's own shape inference
is used, and expressions it cannot follow stay unknown.
"""

from __future__ import annotations

import contextlib
import io
from typing import Iterable, Mapping, Optional

import numpy as np

from maskrt.check.operators import ONNX_TYPES

DEFAULT_DOMAINS = ("", "ai.onnx")


class Graph:
    """The main graph of a ModelProto (subgraphs of Loop/If are not inspected).

    Args:
        proto: the model.
        sizes: values for named dynamic dimensions (e.g. ``{"batch": 8}``), used by :meth:`dim`.
    """

    def __init__(self, proto, sizes: Optional[Mapping[str, int]] = None):
        self.proto = proto
        self.sizes = dict(sizes or {})
        graph = proto.graph
        self.nodes = list(graph.node)
        self.opsets = {o.domain or "": int(o.version) for o in proto.opset_import}
        self.opset = self.opsets.get("", self.opsets.get("ai.onnx", 0))
        self.inputs = [i for i in graph.input if i.name not in {t.name for t in graph.initializer}]
        self.outputs = list(graph.output)
        self.input_names = {i.name for i in self.inputs}
        self.output_names = {o.name for o in self.outputs}
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer = {}
        self.consumers: dict[str, list] = {}
        for node in self.nodes:
            for name in node.output:
                if name:
                    self.producer[name] = node
            for name in node.input:
                if name:
                    self.consumers.setdefault(name, []).append(node)
        self.types: dict[str, int] = {}
        self.shapes: dict[str, list] = {}
        self.shape_source = ""
        self._infer()

    # -- inference ---------------------------------------------------------------------------------------------------
    def _infer(self) -> None:
        import onnx

        inferred = None
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                inferred = _symbolic_shapes(self.proto)
            self.shape_source = "onnxruntime symbolic shape inference"
        except Exception:  # a graph it cannot follow
            inferred = None
        if inferred is None:
            try:
                inferred = onnx.shape_inference.infer_shapes(self.proto, data_prop=True)
                self.shape_source = "onnx shape inference"
            except Exception:
                inferred = self.proto
                self.shape_source = "declared shapes only"
        values = list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)
        values += list(self.proto.graph.value_info) + list(self.proto.graph.input) + list(self.proto.graph.output)
        for vi in values:
            t = vi.type.tensor_type
            if vi.name in self.types and vi.name in self.shapes:
                continue
            if t.elem_type:
                self.types.setdefault(vi.name, t.elem_type)
            if t.HasField("shape"):
                self.shapes.setdefault(vi.name, [d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                                                 for d in t.shape.dim])
        for name, tensor in self.initializers.items():
            self.types[name] = tensor.data_type
            self.shapes[name] = list(tensor.dims)
        for node in self.nodes:
            if node.op_type == "Constant" and node.output:
                value = self.const(node.output[0])
                if value is not None:
                    self.shapes.setdefault(node.output[0], list(value.shape))

    # -- questions ---------------------------------------------------------------------------------------------------
    def dtype(self, name: str) -> Optional[str]:
        """The tensor's type as operators.md names it ("FP32", "INT64", ...), "DOUBLE", or None when unknown."""
        code = self.types.get(name)
        if code is None:
            return None
        return ONNX_TYPES.get(code, f"type {code}")

    def shape(self, name: str) -> Optional[list]:
        return self.shapes.get(name)

    def dim(self, value, sizes: Optional[Mapping[str, int]] = None) -> Optional[int]:
        """A dimension as an int: an int as it is; a name or expression (``"300*batch"``) evaluated with ``sizes``
        (default: the graph's); None when it depends on something unknown (data, an unbound name)."""
        if value is None:
            return None
        if isinstance(value, (int, np.integer)):
            return int(value)
        sizes = dict(self.sizes, **(sizes or {}))
        try:
            import sympy

            expr = sympy.sympify(str(value), locals={k: sympy.Symbol(k) for k in sizes})
            expr = expr.subs({sympy.Symbol(k): v for k, v in sizes.items()})
            return int(expr) if expr.is_number and expr == int(expr) else None
        except Exception:  # a name sympy cannot parse, or one that stays symbolic
            return None

    def const(self, name: str) -> Optional[np.ndarray]:
        """The value of an initializer, a Constant node's output, or a Cast/Identity of one; None otherwise."""
        from onnx import numpy_helper

        if not name:
            return None
        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is None:
            return None
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    return numpy_helper.to_array(a.t)
                if a.name in ("value_int", "value_float"):
                    return np.array(a.i if a.name == "value_int" else a.f)
                if a.name in ("value_ints", "value_floats"):
                    return np.array(list(a.ints) if a.name == "value_ints" else list(a.floats))
            return None
        if node.op_type in ("Identity", "Cast") and node.input:
            return self.const(node.input[0])
        return None

    def is_constant(self, name: str) -> bool:
        return self.const(name) is not None

    def attr(self, node, name: str, default=None):
        """A node attribute's Python value (bytes decoded), or ``default``."""
        import onnx

        for a in node.attribute:
            if a.name == name:
                value = onnx.helper.get_attribute_value(a)
                return value.decode() if isinstance(value, bytes) else value
        return default

    def attributes(self, node) -> dict:
        import onnx

        return {a.name: (a.type, onnx.helper.get_attribute_value(a)) for a in node.attribute}

    def label(self, node) -> str:
        """How findings name a node: its name, else its op type and first output."""
        return node.name or f"{node.op_type}({node.output[0] if node.output else '?'})"

    def of_type(self, *op_types: str) -> Iterable:
        return (n for n in self.nodes if n.op_type in op_types and (n.domain or "") in DEFAULT_DOMAINS)


def _symbolic_shapes(proto):
    """ONNX Runtime's symbolic shape inference, taught the maskrt plugin node's output shape, and without its
    habit of saving the model to the current folder when some shape stays unknown (partial results are kept)."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    from maskrt.plugins import spec

    class Inference(SymbolicShapeInference):
        def __init__(self):
            super().__init__(2**31 - 1, True, False, 0)
            self.dispatcher_[spec.PLUGIN_NAME] = self._infer_maskrt_plugin

        def _infer_maskrt_plugin(self, node):
            rois = self._get_shape(node, 0)
            first = self._get_shape(node, 1)
            fields = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            shape = [rois[0] if rois else None, first[1] if first and len(first) > 1 else None,
                     int(fields.get("output_height", 1)), int(fields.get("output_width", 1))]
            dtype = self.known_vi_[node.input[1]].type.tensor_type.elem_type if node.input[1] in self.known_vi_ else 1
            self.known_vi_[node.output[0]].CopyFrom(onnx.helper.make_tensor_value_info(node.output[0], dtype, shape))

    inference = Inference()
    inference._preprocess(proto)
    while inference.run_:
        inference._infer_impl()
    inference._update_output_from_vi()
    return inference.out_mp_
