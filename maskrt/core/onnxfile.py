"""Model files: which kind a path is, and reading an ONNX file's graph inputs and outputs.

``onnx`` is imported inside the functions that read files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Optional

from maskrt.core.errors import MaskrtError, one_line

#: File suffixes read as TensorRT engines (built by ``maskrt build``).
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
ONNX_SUFFIXES = (".onnx",)
CHECKPOINT_SUFFIXES = (".pth", ".pt", ".safetensors")


def model_kind(path: Optional[str]) -> str:
    """"engine", "onnx" or "checkpoint" (anything else is read as a checkpoint), from the file name."""
    name = str(path or "").lower()
    if name.endswith(ENGINE_SUFFIXES):
        return "engine"
    if name.endswith(ONNX_SUFFIXES):
        return "onnx"
    return "checkpoint"


def is_engine_path(path: Optional[str]) -> bool:
    return bool(path) and model_kind(path) == "engine"


@dataclass(frozen=True)
class TensorSpec:
    """A graph input or output: dtype as a string ("uint8", "float32", ...); shape with None for a dynamic
    dimension."""

    dtype: str
    shape: tuple

    @property
    def dynamic_axes(self) -> tuple[int, ...]:
        return tuple(i for i, d in enumerate(self.shape) if d is None)

    def shape_text(self) -> str:
        return "x".join("?" if d is None else str(d) for d in self.shape)


ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 5: "int16", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
               11: "float64", 12: "uint32", 13: "uint64", 16: "bfloat16"}


def import_onnx():
    try:
        import onnx
    except ImportError as e:
        raise MaskrtError("onnx is not installed: pip install onnx onnxruntime") from e
    return onnx


def load_onnx(path: str):
    """Load an .onnx file; MaskrtError for a missing, truncated or corrupt file."""
    onnx = import_onnx()
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MaskrtError(f"model not found: {path}")
    try:
        proto = onnx.load(path)
        if not proto.graph.node:
            raise ValueError("the graph has no nodes")
        return proto
    except Exception as e:  # protobuf and onnx raise many types for a damaged file
        raise MaskrtError(f"{path} is not a readable ONNX model (corrupt or truncated?): {one_line(e)}") from e


def value_specs(values: Iterable, exclude=frozenset()) -> dict[str, TensorSpec]:
    """name -> :class:`TensorSpec` for ONNX ValueInfoProtos (graph inputs or outputs)."""
    out = {}
    for v in values:
        if v.name in exclude:
            continue
        t = v.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        out[v.name] = TensorSpec(ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), shape)
    return out


def graph_io(proto) -> tuple[dict[str, TensorSpec], dict[str, TensorSpec]]:
    """(inputs, outputs) of a ModelProto; initializers listed as inputs (old exporters) are left out."""
    initializers = {i.name for i in proto.graph.initializer}
    return value_specs(proto.graph.input, initializers), value_specs(proto.graph.output)


def metadata_props(proto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}
