"""What a runtime needs to know about an exported model: the ``ModelMeta`` stored in ONNX metadata_props."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Optional

from maskrt.errors import MaskrtError

REQUIRED = ("input_size", "class_names", "min_size", "max_size", "image_mean", "image_std")


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to turn images into inputs and outputs into detections.

    ``batch`` is None for a dynamic-batch model.
    """

    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    min_size: int
    max_size: int
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225)
    batch: Optional[int] = 1
    score_threshold: float = 0.05
    max_detections: int = 100
    precision: str = "fp32"
    preset: str = "custom"
    target: str = "portable"
    maskrt_version: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @classmethod
    def from_model(cls, model, input_size, batch: Optional[int] = 1, precision: str = "fp32", class_names=None) -> "ModelMeta":
        from maskrt.export.onnx_export import build_metadata

        raw = build_metadata(model, input_size=input_size, batch=batch or 1, dynamic_batch=batch is None,
                             precision=precision, opset=0, class_names=class_names)
        return cls.from_props(raw, source="model")

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> "ModelMeta":
        missing = [k for k in REQUIRED if k not in props]
        if missing:
            raise MaskrtError(
                f"{source} is not a maskrt export: its metadata lacks {', '.join(missing)}; re-export it with "
                "`maskrt export`, or run it with a runner directly (maskrt.runtime.OrtRunner) and do the "
                "pre/post-processing yourself"
            )
        try:
            batch = props.get("batch", "1")
            return cls(
                input_size=tuple(int(v) for v in json.loads(props["input_size"])),
                class_names=tuple(str(v) for v in json.loads(props["class_names"])),
                min_size=int(props["min_size"]),
                max_size=int(props["max_size"]),
                image_mean=tuple(float(v) for v in json.loads(props["image_mean"])),
                image_std=tuple(float(v) for v in json.loads(props["image_std"])),
                batch=None if batch == "dynamic" else int(batch),
                score_threshold=float(props.get("score_threshold", "0.05")),
                max_detections=int(props.get("max_detections", "100")),
                precision=props.get("precision", "fp32"),
                preset=props.get("preset", "custom"),
                target=props.get("target", "portable"),
                maskrt_version=props.get("maskrt_version", ""),
            )
        except (ValueError, TypeError, json.JSONDecodeError) as e:
            raise MaskrtError(f"{source} has malformed maskrt metadata ({e}); re-export it with `maskrt export`") from e
