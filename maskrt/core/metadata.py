"""The model metadata format: what a runtime needs to use an exported model, written and read here only.

An export stores a :class:`ModelMeta` in the ONNX file's ``metadata_props`` (string values; JSON for lists),
an engine's sidecar copies them, and every runner exposes one as ``runner.meta``. :meth:`ModelMeta.to_props`
writes the keys of :data:`METADATA_KEYS` in that order; :meth:`ModelMeta.from_props` reads them back and names
what is missing or malformed. (How a model's settings become a ``ModelMeta`` is :func:`maskrt.model.meta.model_meta`.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Mapping, Optional

from maskrt.core.errors import MaskrtError

#: Keys written into metadata_props, in this order (all values are strings; JSON for lists and objects).
METADATA_KEYS = (
    "maskrt_version", "preset", "num_classes", "class_names", "input_size", "batch", "dynamic_batch",
    "resize_rule", "min_size", "max_size", "size_divisible", "image_mean", "image_std", "score_threshold",
    "nms_threshold", "max_detections", "mask_size", "precision", "opset", "target", "inputs", "dynamic_size",
    "min_input_size", "max_input_size",
)
REQUIRED = ("input_size", "class_names", "min_size", "max_size", "image_mean", "image_std")
RESIZE_RULE = "torchvision-min-max-fit"


@dataclass(frozen=True)
class ModelMeta:
    """Everything needed to turn images into inputs and outputs into detections.

    ``input_size``: (H, W) of the export canvas (for a dynamic-size model, the size it was exported and is
    tuned at); ``batch``: the fixed batch, None for a dynamic-batch model; ``class_names``: background first;
    ``min_size``/``max_size``: the resize rule's limits; ``inputs``: the graph's inputs ("images", and
    "image_sizes" for models that take each image's size); ``dynamic_size``: H and W may be any multiples of
    ``size_divisible`` between ``min_input_size`` and ``max_input_size``.
    """

    input_size: tuple[int, int]
    class_names: tuple[str, ...]
    min_size: int
    max_size: int
    image_mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    image_std: tuple[float, ...] = (0.229, 0.224, 0.225)
    batch: Optional[int] = 1
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_detections: int = 100
    mask_size: int = 28
    size_divisible: int = 32
    precision: str = "fp32"
    preset: str = "custom"
    target: str = "portable"
    opset: int = 0
    maskrt_version: str = ""
    inputs: tuple[str, ...] = ("images",)
    dynamic_size: bool = False
    min_input_size: Optional[tuple[int, int]] = None
    max_input_size: Optional[tuple[int, int]] = None

    @property
    def takes_image_sizes(self) -> bool:
        return "image_sizes" in self.inputs

    @property
    def largest_input(self) -> tuple[int, int]:
        """The largest canvas the model takes: its fixed size, or the upper bound of a dynamic-size model."""
        h, w = self.max_input_size if self.dynamic_size and self.max_input_size else self.input_size
        return int(h), int(w)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def dynamic_batch(self) -> bool:
        return self.batch is None

    def to_props(self) -> dict[str, str]:
        """The metadata_props of an export, keys in :data:`METADATA_KEYS` order."""
        return {
            "maskrt_version": self.maskrt_version,
            "preset": self.preset,
            "num_classes": str(self.num_classes),
            "class_names": json.dumps(list(self.class_names)),
            "input_size": json.dumps(list(self.input_size)),
            "batch": "dynamic" if self.batch is None else str(self.batch),
            "dynamic_batch": json.dumps(self.batch is None),
            "resize_rule": RESIZE_RULE,
            "min_size": str(self.min_size),
            "max_size": str(self.max_size),
            "size_divisible": str(self.size_divisible),
            "image_mean": json.dumps(list(self.image_mean)),
            "image_std": json.dumps(list(self.image_std)),
            "score_threshold": repr(float(self.score_threshold)),
            "nms_threshold": repr(float(self.nms_threshold)),
            "max_detections": str(self.max_detections),
            "mask_size": str(self.mask_size),
            "precision": self.precision,
            "opset": str(self.opset),
            "target": self.target,
            "inputs": json.dumps(list(self.inputs)),
            "dynamic_size": json.dumps(bool(self.dynamic_size)),
            "min_input_size": json.dumps(list(self.min_input_size) if self.min_input_size else None),
            "max_input_size": json.dumps(list(self.max_input_size) if self.max_input_size else None),
        }

    @classmethod
    def from_props(cls, props: Mapping[str, str], source: str = "model") -> ModelMeta:
        """Read metadata_props (or a sidecar's copy); MaskrtError naming what is missing or malformed."""
        missing = [k for k in REQUIRED if k not in props]
        if missing:
            raise MaskrtError(
                f"{source} is not a maskrt export: its metadata lacks {', '.join(missing)}; re-export it with "
                "`maskrt export`, or run it with a runner directly (maskrt.backends.OrtRunner) and do the "
                "pre/post-processing yourself"
            )
        try:
            batch = props.get("batch", "1")
            size = [int(v) for v in json.loads(props["input_size"])]
            if len(size) != 2:
                raise ValueError(f"input_size {size} is not [height, width]")
            meta = cls(
                input_size=(size[0], size[1]),
                class_names=tuple(str(v) for v in json.loads(props["class_names"])),
                min_size=int(props["min_size"]),
                max_size=int(props["max_size"]),
                image_mean=tuple(float(v) for v in json.loads(props["image_mean"])),
                image_std=tuple(float(v) for v in json.loads(props["image_std"])),
                batch=None if batch == "dynamic" else int(batch),
                score_threshold=float(props.get("score_threshold", "0.05")),
                nms_threshold=float(props.get("nms_threshold", "0.5")),
                max_detections=int(props.get("max_detections", "100")),
                mask_size=int(props.get("mask_size", "28")),
                size_divisible=int(props.get("size_divisible", "32")),
                precision=props.get("precision", "fp32"),
                preset=props.get("preset", "custom"),
                target=props.get("target", "portable"),
                opset=int(props.get("opset", "0") or 0),
                maskrt_version=props.get("maskrt_version", ""),
                inputs=tuple(str(v) for v in json.loads(props.get("inputs", '["images"]'))),
                dynamic_size=bool(json.loads(props.get("dynamic_size", "false"))),
                min_input_size=_pair_or_none(props.get("min_input_size")),
                max_input_size=_pair_or_none(props.get("max_input_size")),
            )
        except (ValueError, TypeError, RecursionError, json.JSONDecodeError) as e:
            raise MaskrtError(f"{source} has malformed maskrt metadata ({e}); re-export it with `maskrt export`") from e
        if min(meta.input_size) < 1 or not meta.class_names:
            raise MaskrtError(f"{source} has malformed maskrt metadata (input_size {list(meta.input_size)}, "
                              f"{len(meta.class_names)} class names); re-export it with `maskrt export`")
        return meta


def _pair_or_none(text: Optional[str]) -> Optional[tuple[int, int]]:
    value = json.loads(text) if text else None
    if value is None:
        return None
    if len(value) != 2:
        raise ValueError(f"{value} is not [height, width]")
    return int(value[0]), int(value[1])
