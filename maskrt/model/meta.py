"""A model's settings as the metadata an export carries (:class:`maskrt.core.metadata.ModelMeta`)."""

from __future__ import annotations

from typing import Optional, Sequence

from maskrt import __version__
from maskrt.core.errors import MaskrtError
from maskrt.core.metadata import ModelMeta


def default_class_names(num_classes: int) -> list[str]:
    """COCO's names for a 91-class model, else ``class_N``; index 0 is the background."""
    if num_classes == 91:
        from maskrt.model.coco_names import COCO_91

        return list(COCO_91)
    return ["__background__"] + [f"class_{i}" for i in range(1, num_classes)]


def class_names_of(model, class_names: Optional[Sequence[str]] = None) -> list[str]:
    """``class_names`` (checked against the model's class count), else the model's own, else the defaults."""
    if class_names is None:
        class_names = getattr(model, "class_names", None)
    names = list(class_names) if class_names is not None else default_class_names(model.num_classes)
    if len(names) != model.num_classes:
        raise MaskrtError(
            f"got {len(names)} class names for a model with {model.num_classes} classes (including background); "
            "list one name per class, background first"
        )
    return names


def size_bounds(model) -> tuple[tuple[int, int], tuple[int, int]]:
    """(min, max) canvas (H, W) a dynamic-size graph of ``model`` takes: any image its resize rule can produce,
    padded to ``size_divisible`` (its long side is at most ``max_size``, in either orientation)."""
    d = int(model.size_divisible)
    longest = -(-int(model.max_size) // d) * d
    return (d, d), (longest, longest)


def model_meta(model, input_size: Sequence[int], batch: Optional[int] = 1, precision: str = "fp32", opset: int = 0,
               class_names: Optional[Sequence[str]] = None, target: str = "portable", dynamic_size: bool = False,
               inputs: Sequence[str] = ("images", "image_sizes")) -> ModelMeta:
    """The :class:`ModelMeta` of ``model`` (a :class:`maskrt.model.MaskRCNN`) exported at ``input_size`` (H, W)
    with ``batch`` images per call (None: dynamic batch); ``dynamic_size``: H and W within :func:`size_bounds`."""
    heads = model.roi_heads
    lo, hi = size_bounds(model) if dynamic_size else (None, None)
    return ModelMeta(
        input_size=(int(input_size[0]), int(input_size[1])),
        class_names=tuple(class_names_of(model, class_names)),
        min_size=int(model.min_size[-1]),
        max_size=int(model.max_size),
        image_mean=tuple(float(v) for v in model.image_mean),
        image_std=tuple(float(v) for v in model.image_std),
        batch=batch,
        score_threshold=float(heads.score_thresh),
        nms_threshold=float(heads.nms_thresh),
        max_detections=int(heads.detections_per_img),
        mask_size=2 * int(heads.mask_output_size),
        size_divisible=int(model.size_divisible),
        precision=precision,
        preset=model.preset,
        target=target,
        opset=int(opset),
        maskrt_version=__version__,
        inputs=tuple(inputs),
        dynamic_size=dynamic_size,
        min_input_size=lo,
        max_input_size=hi,
    )


def read_class_names(path: Optional[str], num_classes: int) -> Optional[list[str]]:
    """Class names from a text file (one per line; the background may be left out); None for no file."""
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise MaskrtError(f"cannot read class names from {path}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise MaskrtError(f"{path} is not a UTF-8 text file; list one class name per line") from None
    if len(names) == num_classes - 1:
        names = ["__background__"] + names
    if len(names) != num_classes:
        raise MaskrtError(
            f"{path} lists {len(names)} class names; the model has {num_classes} classes including background "
            f"(give {num_classes - 1} names, or {num_classes} with the background first)"
        )
    return names
