"""COCO-format results: boxes as [x, y, w, h], masks as RLE (pycocotools)."""

from __future__ import annotations

import numpy as np

from maskrt.errors import MaskrtError


def encode_rle(binary: np.ndarray) -> dict:
    """(H, W) bool mask -> COCO RLE with ``counts`` as a string (JSON-serialisable)."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError as e:
        raise MaskrtError("writing COCO masks needs pycocotools: pip install pycocotools") from e
    rle = mask_utils.encode(np.asfortranarray(binary.astype(np.uint8)))
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def detections_to_coco(detections, image_id: int, file_name: str = "") -> list[dict]:
    """COCO results entries for one image's :class:`maskrt.runtime.Detections`."""
    out = []
    binary = detections.binary_masks().numpy()
    for i in range(len(detections)):
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[i])
        entry = {
            "image_id": int(image_id),
            "category_id": int(detections.labels[i]),
            "category_name": detections.names[i],
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(float(detections.scores[i]), 6),
            "segmentation": encode_rle(binary[i]),
        }
        if file_name:
            entry["file_name"] = file_name
        out.append(entry)
    return out
