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


def crop_rle(binary_crop: np.ndarray, top: int, left: int, height: int, width: int) -> dict:
    """COCO RLE (``counts`` as a string) of an (H, W) mask that is zero outside ``binary_crop`` placed at
    (``top``, ``left``): the runs are counted over the crop's columns only (COCO runs go down each column), so
    the cost is the crop's height times its width, not the image's."""
    ch, cw = binary_crop.shape
    if ch == 0 or cw == 0 or not binary_crop.any():
        counts = [height * width]
    else:
        strip = np.zeros((cw, height), dtype=np.uint8)  # the crop's columns, full height, column by column
        strip[:, top:top + ch] = binary_crop.T
        flat = strip.reshape(-1)
        edges = np.flatnonzero(flat[1:] != flat[:-1]) + 1
        runs = np.diff(np.concatenate(([0], edges, [flat.size]))).tolist()
        if flat[0]:
            runs.insert(0, 0)
        runs[0] += left * height  # the columns before the crop are all zero
        after = (width - left - cw) * height
        if len(runs) % 2:  # ends with a run of zeros
            runs[-1] += after
        elif after:
            runs.append(after)
        counts = runs
    rle = _mask_utils().frPyObjects({"size": [height, width], "counts": counts}, height, width)
    rle["counts"] = rle["counts"].decode("ascii")
    return rle


def decode_rles(counts, height: int, width: int) -> np.ndarray:
    """COCO compressed RLE ``counts`` strings (str or bytes) of (height, width) masks -> (N, height, width) uint8."""
    if not counts:
        return np.zeros((0, height, width), dtype=np.uint8)
    rles = [{"size": [height, width], "counts": c if isinstance(c, bytes) else c.encode("ascii")} for c in counts]
    try:
        decoded = _mask_utils().decode(rles)  # (H, W, N), Fortran order
    except Exception as e:
        raise MaskrtError(f"cannot decode an RLE mask of size {height}x{width}: {e}") from None
    return np.ascontiguousarray(np.transpose(decoded, (2, 0, 1)))


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
    boxes = detections.boxes.cpu().tolist()
    scores = detections.scores.cpu().tolist()
    wanted = set(keep)
    rles = {}
    height, width = detections.image_size
    for i, (crop, top, left) in enumerate(detections.iter_mask_crops()):  # one box-sized crop at a time
        if i in wanted:
            rles[i] = crop_rle((crop > 0.5).cpu().numpy(), top, left, height, width)
    out = []
    for i in keep:
        x1, y1, x2, y2 = boxes[i]
        rle = rles[i]
        entry = {
            "image_id": image_id,
            "category_id": int(mapping[labels[i]] if mapping is not None else labels[i]),
            "category_name": detections.names[i],
            "bbox": [round(x1, 3), round(y1, 3), round(x2 - x1, 3), round(y2 - y1, 3)],
            "score": round(float(scores[i]), 6),
            "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"]},
        }
        if file_name:
            entry["file_name"] = file_name
        out.append(entry)
    return out
