"""Small files for the engine tests: a tiny ONNX with maskrt metadata, a fake engine with its sidecar."""

from __future__ import annotations

import hashlib
import json
import os

META = {
    "maskrt_version": "0.1.0", "preset": "tiny", "num_classes": "2", "class_names": json.dumps(["__background__", "x"]),
    "input_size": json.dumps([32, 48]), "batch": "dynamic", "dynamic_batch": "true", "min_size": "32",
    "max_size": "48", "image_mean": json.dumps([0.5, 0.5, 0.5]), "image_std": json.dumps([0.25, 0.25, 0.25]),
    "precision": "fp32", "target": "portable",
}


def tiny_onnx(path, batch=None, precision="fp32", plugin_nodes=0, metadata=True, size=(32, 48)) -> str:
    """uint8 images (B, 3, H, W) -> float: images * w (w an initializer, fp16 for precision fp16); optional
    maskrt plugin nodes (never run here: the file is only inspected)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from maskrt.plugins import spec

    h, w = size
    ftype = TensorProto.FLOAT16 if precision == "fp16" else TensorProto.FLOAT
    dtype = np.float16 if precision == "fp16" else np.float32
    b = batch if batch is not None else "batch"
    nodes = [helper.make_node("Cast", ["images"], ["f"], to=ftype),
             helper.make_node("Mul", ["f", "w"], ["scaled"])]
    for i in range(plugin_nodes):
        nodes.append(helper.make_node(spec.PLUGIN_NAME, ["scaled"], [f"p{i}"], domain=spec.ONNX_DOMAIN))
    nodes.append(helper.make_node("Identity", ["scaled"], ["out"]))
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.UINT8, [b, 3, h, w])],
        [helper.make_tensor_value_info("out", ftype, [b, 3, h, w])],
        [numpy_helper.from_array(np.full((1, 3, 1, 1), 0.5, dtype=dtype), "w")],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(spec.ONNX_DOMAIN, 1)] if plugin_nodes else [])
    model = helper.make_model(graph, opset_imports=opsets)
    model.ir_version = 8
    if metadata:
        meta = dict(META, precision=precision, batch="dynamic" if batch is None else str(batch),
                    input_size=json.dumps([h, w]))
        for k, v in meta.items():
            model.metadata_props.add(key=k, value=v)
    onnx.save(model, os.fspath(path))
    return os.fspath(path)


def fake_engine(path, data=b"not really an engine" * 10, trt_version="10.16.0.72", gpu=("NVIDIA H100 80GB HBM3", "9.0"),
                batch=None, plugin_library=None, metadata=True) -> str:
    """An engine file (arbitrary bytes) with a sidecar as ``maskrt build`` writes it."""
    from maskrt.backends.trt.sidecar import SIDECAR_SCHEMA, SIDECAR_VERSION, sidecar_path

    with open(path, "wb") as f:
        f.write(data)
    b = -1 if batch is None else batch
    images = {"name": "images", "dtype": "uint8", "shape": [b, 3, 32, 48]}
    if batch is None:
        images.update(min=[1, 3, 32, 48], opt=[1, 3, 32, 48], max=[8, 3, 32, 48])
    outputs = [{"name": "num_detections", "dtype": "int32", "shape": [b]},
               {"name": "boxes", "dtype": "float32", "shape": [b, 100, 4]}]
    sidecar = {
        "schema": SIDECAR_SCHEMA, "schema_version": SIDECAR_VERSION,
        "engine": {"file": os.path.basename(path), "size_bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()},
        "tensorrt": {"version": trt_version},
        "gpu": {"name": gpu[0], "compute_capability": gpu[1]},
        "precision": "fp32", "precision_route": "fp32", "strongly_typed": False,
        "inputs": [images], "outputs": outputs,
        "onnx": {"file": "model.onnx", "sha256": "0" * 64, "size_bytes": 1,
                 "metadata": dict(META, batch="dynamic" if batch is None else str(batch)) if metadata else {}},
        "plugin_library": plugin_library,
        "build": {},
    }
    with open(sidecar_path(path), "w", encoding="utf-8") as f:
        json.dump(sidecar, f)
    return os.fspath(path)
