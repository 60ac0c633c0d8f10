"""COCO-format results: boxes as [x, y, w, h], masks as RLE (pycocotools); the one place detections become COCO."""

from __future__ import annotations

from typing import Mapping, Optional

import numpy as np

from maskrt.core.errors import MaskrtError


def _mask_utils():
    try:
        from pycocotools import mask as mask_utils
    except ImportError as e:
        raise MaskrtError("writing COCO masks needs pycocotools: pip install pycocotools") from e
    return mask_utils


def encode_rle(binary: np.ndarray) -> dict:
    """(H, W) bool mask -> COCO RLE with ``counts`` as a string (JSON-serialisable)."""
    rle = _mask_utils().encode(np.asfortranarray(binary.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def coco_results(detections, image_id, mapping: Optional[Mapping[int, int]] = None, file_name: str = "") -> list[dict]:
    """COCO results entries for one image's :class:`~maskrt.inference.Detections`.

    Each entry: ``image_id``, ``category_id``, ``category_name``, ``bbox`` [x, y, w, h] (3 decimals), ``score``
    (6 decimals), ``segmentation`` (RLE of the mask at 0.5) and, when given, ``file_name``. ``mapping`` (model
    label -> dataset category id) renumbers the categories and leaves out detections of classes outside it;
    without it the category id is the model's label.
    """
    labels = [int(v) for v in detections.labels.tolist()]
    keep = [i for i, label in enumerate(labels) if mapping is None or label in mapping]
    if not keep:
        return []
    binary = detections.binary_masks(0.5)[keep].numpy().astype(np.uint8)
    rles = _mask_utils().encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    boxes = detections.boxes[keep].tolist()
    scores = detections.scores[keep].tolist()
    out = []
    for k, i in enumerate(keep):
        x1, y1, x2, y2 = boxes[k]
        rle = rles[k]
        entry = {
            "image_id": image_id,
            "category_id": int(mapping[labels[i]] if mapping is not None else labels[i]),
            "category_name": detections.names[i],
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(float(scores[k]), 6),
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
        }
        if file_name:
            entry["file_name"] = file_name
        out.append(entry)
    return out
