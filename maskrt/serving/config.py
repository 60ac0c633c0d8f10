"""Triton model configurations (config.pbtxt, protobuf text format) written from plain values.

Every text this module writes parses with Triton's own ``model_config.proto`` (``tritonclient``'s copy), which the
tests check; field names and enums follow that proto (``TYPE_UINT8``, ``KIND_CPU``, ...).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Optional, Sequence


@dataclass
class Tensor:
    """One input or output: ``dims`` without the batch dimension (-1 for a variable size); ``reshape`` the shape
    the model itself sees when it differs (``[]`` for a per-item scalar, shape [B] in the model)."""

    name: str
    data_type: str
    dims: Sequence[int]
    reshape: Optional[Sequence[int]] = None


@dataclass
class Step:
    """One model of an ensemble: its inputs and outputs mapped to ensemble tensor names."""

    model_name: str
    input_map: dict  # model input name -> ensemble tensor
    output_map: dict  # model output name -> ensemble tensor
    model_version: int = -1


@dataclass
class ModelConfig:
    name: str
    max_batch_size: int
    inputs: list
    outputs: list
    backend: Optional[str] = None  # "python", "onnxruntime", "tensorrt"
    platform: Optional[str] = None  # "ensemble", "onnxruntime_onnx", "tensorrt_plan"
    instances: int = 0  # 0: no instance_group (ensembles have none)
    kind: str = "KIND_CPU"
    dynamic_batching: bool = False
    max_queue_delay_us: int = 0
    preferred_batch_sizes: Sequence[int] = ()
    default_model_filename: Optional[str] = None
    parameters: dict = field(default_factory=dict)
    steps: list = field(default_factory=list)

    def to_text(self) -> str:
        """The config as Triton's text format."""
        def q(text: str) -> str:  # a JSON string (UTF-8 kept) is a valid protobuf text-format string
            return json.dumps(text, ensure_ascii=False)

        lines = [f"name: {q(self.name)}"]
        if self.platform:
            lines.append(f"platform: {q(self.platform)}")
        if self.backend:
            lines.append(f"backend: {q(self.backend)}")
        lines.append(f"max_batch_size: {int(self.max_batch_size)}")
        if self.default_model_filename:
            lines.append(f"default_model_filename: {q(self.default_model_filename)}")
        lines += _tensors("input", self.inputs) + _tensors("output", self.outputs)
        if self.dynamic_batching:
            body = []
            if self.preferred_batch_sizes:
                body.append(f"  preferred_batch_size: [ {', '.join(str(int(b)) for b in self.preferred_batch_sizes)} ]")
            body.append(f"  max_queue_delay_microseconds: {int(self.max_queue_delay_us)}")
            lines += ["dynamic_batching {", *body, "}"]
        if self.instances:
            lines.append(f"instance_group [ {{ count: {int(self.instances)} kind: {self.kind} }} ]")
        if self.steps:
            lines.append("ensemble_scheduling {")
            for step in self.steps:
                lines += ["  step {", f"    model_name: {q(step.model_name)}", f"    model_version: {step.model_version}"]
                lines += [f"    input_map {{ key: {q(k)} value: {q(v)} }}" for k, v in step.input_map.items()]
                lines += [f"    output_map {{ key: {q(k)} value: {q(v)} }}" for k, v in step.output_map.items()]
                lines.append("  }")
            lines.append("}")
        for key, value in self.parameters.items():
            lines.append(f"parameters {{ key: {q(key)} value: {{ string_value: {q(str(value))} }} }}")
        return "\n".join(lines) + "\n"


def _tensors(kind: str, tensors: Sequence[Tensor]) -> list[str]:
    if not tensors:
        return []
    out = [f"{kind} ["]
    for i, t in enumerate(tensors):
        dims = ", ".join(str(int(d)) for d in t.dims)
        text = f"  {{ name: {json.dumps(t.name)} data_type: {t.data_type} dims: [ {dims} ]"
        if t.reshape is not None:
            text += f" reshape: {{ shape: [ {', '.join(str(int(d)) for d in t.reshape)} ] }}"
        out.append(text + (" }," if i < len(tensors) - 1 else " }"))
    out.append("]")
    return out


def check_model_name(name: str, option: str = "--name") -> None:
    """A Triton model name maskrt writes: letters, digits, ``_``, ``-`` and ``.``, not starting with a dot (it
    names a folder of the repository and appears in URLs)."""
    import re

    from maskrt.core.errors import MaskrtError

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", name or ""):
        raise MaskrtError(f"{option} {name!r} is not a usable model name: use letters, digits, '_', '-' and '.'")
