"""Turn an fp32 maskrt graph into an fp16 one with the numerically sensitive parts kept in fp32.

The network (backbone, RPN head, box and mask heads) runs in fp16: its float initializers are stored as fp16
and a ``Cast`` to fp16 is inserted where fp32 values enter it. Everything else (normalisation, anchors and box
decoding with ``Exp``, clipping, level assignment, ``RoiAlign``, NMS scores, softmax/sigmoid, top-k) stays fp32,
and a ``Cast`` back to fp32 is inserted where fp16 values leave the network. The network's nodes are found
by the module scope the exporter writes into node names.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

#: Module scopes (node-name prefixes written by the exporter) whose nodes run in fp16.
FP16_SCOPES = (
    "/backbone/",
    "/rpn/head/",
    "/roi_heads/box_head/",
    "/roi_heads/box_predictor/",
    "/roi_heads/mask_head/",
    "/roi_heads/mask_predictor/",
)
# Ops that carry a tensor through unchanged in type; anything else in a scope is taken as computing in fp16.
_SHAPE_OPS = {"Shape", "Constant", "Size"}


def inline_initializer_identities(model: onnx.ModelProto) -> onnx.ModelProto:
    """Drop ``Identity`` nodes that only rename an initializer (the exporter writes them for shared weights);
    their consumers read the initializer directly. Graph outputs are left alone."""
    graph = model.graph
    inits = {t.name for t in graph.initializer}
    outputs = {o.name for o in graph.output}
    rename = {}
    keep = []
    for node in graph.node:
        if node.op_type == "Identity" and node.input[0] in inits and node.output[0] not in outputs:
            rename[node.output[0]] = node.input[0]
        else:
            keep.append(node)
    for node in keep:
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    del graph.node[:]
    graph.node.extend(keep)
    return model


def _in_region(node: onnx.NodeProto) -> bool:
    name = "/" + node.name.lstrip("/")
    in_scope = any(name.startswith(s) or name.startswith("/model" + s) for s in FP16_SCOPES)
    return in_scope and node.op_type not in _SHAPE_OPS


def convert_to_fp16(model: onnx.ModelProto) -> onnx.ModelProto:
    """Return a copy of ``model`` whose network region computes in fp16 (see module docstring)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    producers = {}
    for node in graph.node:
        for out in node.output:
            producers[out] = node
    consumers = defaultdict(list)
    for node in graph.node:
        for i in node.input:
            consumers[i].append(node)

    region = {id(n) for n in graph.node if _in_region(n)}
    float_values = _float_values(model)

    def in_region_value(name: str) -> bool:
        p = producers.get(name)
        return p is not None and id(p) in region

    # Initializers used only inside the region become fp16.
    for name, init in inits.items():
        users = consumers.get(name, [])
        if init.data_type == TensorProto.FLOAT and users and all(id(u) in region for u in users):
            arr = numpy_helper.to_array(init).astype(np.float16)
            init.CopyFrom(numpy_helper.from_array(arr, name))
            float_values.discard(name)

    new_nodes = []
    casts_in: dict[str, str] = {}
    casts_out: dict[str, str] = {}
    for node in graph.node:
        if id(node) in region:
            if node.op_type == "Cast":  # casts made inside the network (e.g. a 0/1 mask) make fp16 there
                for a in node.attribute:
                    if a.name == "to" and a.i == TensorProto.FLOAT:
                        a.i = TensorProto.FLOAT16
            for idx, name in enumerate(node.input):
                if name and name in float_values and not in_region_value(name):
                    if name not in casts_in:
                        casts_in[name] = f"{name}__fp16"
                        new_nodes.append(helper.make_node("Cast", [name], [casts_in[name]], to=TensorProto.FLOAT16,
                                                          name=f"{name}__to_fp16"))
                    node.input[idx] = casts_in[name]
        else:
            for idx, name in enumerate(node.input):
                if name and in_region_value(name) and name in float_values:
                    if name not in casts_out:
                        casts_out[name] = f"{name}__fp32"
                        new_nodes.append(helper.make_node("Cast", [name], [casts_out[name]], to=TensorProto.FLOAT,
                                                          name=f"{name}__to_fp32"))
                    node.input[idx] = casts_out[name]
        new_nodes.append(node)
    # Graph outputs produced inside the region go back to fp32 too.
    for out in graph.output:
        if in_region_value(out.name) and out.name in float_values:
            raise ValueError(f"graph output {out.name} comes straight from the fp16 network; expected fp32 post-processing")
    del graph.node[:]
    graph.node.extend(_toposort(new_nodes, [i.name for i in graph.input] + list(inits)))
    del graph.value_info[:]
    return model


def _float_values(model: onnx.ModelProto) -> set[str]:
    """Names of all fp32 values in the fp32 graph, from shape/type inference."""
    inferred = onnx.shape_inference.infer_shapes(model)
    out = set()
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        if vi.type.tensor_type.elem_type == TensorProto.FLOAT:
            out.add(vi.name)
    for init in model.graph.initializer:
        if init.data_type == TensorProto.FLOAT:
            out.add(init.name)
    for node in model.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == TensorProto.FLOAT:
                    out.update(node.output)
    return out


def _toposort(nodes, available):
    ready = set(available) | {""}
    pending = list(nodes)
    ordered = []
    while pending:
        rest = []
        for node in pending:
            if all(i in ready for i in node.input):
                ordered.append(node)
                ready.update(node.output)
            else:
                rest.append(node)
        if len(rest) == len(pending):
            raise ValueError("fp16 conversion produced a graph with a cycle or a missing input")
        pending = rest
    return ordered
