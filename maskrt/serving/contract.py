"""What a served maskrt model takes and returns (``maskrt serve`` and the ensemble ``maskrt triton`` writes).

Per batch item (Triton adds the batch dimension in front; ``max_batch_size`` > 0):

=================  ======  ========  ====================================================================
name               type    dims      meaning
=================  ======  ========  ====================================================================
``image``          BYTES   [1]       input: one encoded image file (PNG, JPEG, ... as read from disk)
``num_detections`` INT32   [1]       how many of the K rows below are detections
``boxes``          FP32    [K, 4]    XYXY in the original image's pixels
``scores``         FP32    [K]
``labels``         INT32   [K]       class index (0 is background; the names are in the model config)
``masks``          BYTES   [K]       each detection's mask as a COCO compressed RLE ``counts`` string
=================  ======  ========  ====================================================================

K is the model's ``max_detections``; rows past ``num_detections`` are zeros (empty strings for ``masks``).

Masks: the detection's mask pasted into the original image (H x W, as torchvision pastes it) and binarised at
0.5, run-length encoded as COCO does (runs down each column, starting with a run of zeros) and compressed into
the ASCII ``counts`` string of pycocotools (the ``segmentation`` of ``maskrt predict``'s predictions.json).
Decode with ``pycocotools.mask.decode({"size": [H, W], "counts": s})`` where H x W is the image's size.
The model config's parameters carry ``maskrt_class_names`` (a JSON list, background first).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

INPUT_NAME = "image"
OUTPUT_NAMES = ("num_detections", "boxes", "scores", "labels", "masks")


def output_specs(k: int) -> list[tuple[str, str, list[int]]]:
    """(name, Triton data type, dims without the batch) of every output, for K detections per image."""
    return [("num_detections", "TYPE_INT32", [1]), ("boxes", "TYPE_FP32", [k, 4]), ("scores", "TYPE_FP32", [k]),
            ("labels", "TYPE_INT32", [k]), ("masks", "TYPE_STRING", [k])]


def mask_rles(detections) -> list[bytes]:
    """Each detection's mask at 0.5 as COCO compressed RLE counts (bytes), pasted one box at a time."""
    from maskrt.data.coco import crop_rle

    height, width = detections.image_size
    return [crop_rle((crop > 0.5).cpu().numpy(), top, left, height, width)["counts"].encode("ascii")
            for crop, top, left in detections.iter_mask_crops()]


def detection_arrays(detections, k: int) -> dict:
    """One image's :class:`~maskrt.inference.Detections` as the served outputs (numpy, no batch dimension)."""
    n = min(len(detections), k)
    boxes = np.zeros((k, 4), dtype=np.float32)
    scores = np.zeros((k,), dtype=np.float32)
    labels = np.zeros((k,), dtype=np.int32)
    masks = np.empty((k,), dtype=np.object_)
    masks[:] = [b""] * k
    if n:
        boxes[:n] = detections.boxes[:n].cpu().float().numpy()
        scores[:n] = detections.scores[:n].cpu().float().numpy()
        labels[:n] = detections.labels[:n].cpu().numpy().astype(np.int32)
        masks[:n] = mask_rles(detections)[:n]
    return {"num_detections": np.array([n], dtype=np.int32), "boxes": boxes, "scores": scores, "labels": labels,
            "masks": masks}


def detections_from_arrays(arrays: dict, image_size: tuple[int, int], class_names: Sequence[str],
                           source: str = "", score_threshold: float = 0.0, row: Optional[int] = None):
    """Served outputs of one image (``row`` of a batch, or arrays without the batch dimension) as
    :class:`~maskrt.inference.Detections`: boxes, scores, labels and the masks decoded from RLE (binary, held as
    float32 0/1 in ``masks``; ``mask_probs`` is empty, the server sends no per-box probabilities)."""
    import torch

    from maskrt.data.coco import decode_rles
    from maskrt.inference.detections import Detections

    def take(name):
        value = arrays[name]
        return value[row] if row is not None else value

    n = int(np.asarray(take("num_detections")).reshape(-1)[0])
    scores = np.asarray(take("scores"), dtype=np.float32)[:n]
    keep = np.flatnonzero(scores >= score_threshold) if score_threshold > 0 else np.arange(n)
    boxes = torch.from_numpy(np.asarray(take("boxes"), dtype=np.float32)[:n][keep].copy()).reshape(-1, 4)
    labels = torch.from_numpy(np.asarray(take("labels"), dtype=np.int64)[:n][keep].copy())
    counts = [bytes(c) for c in np.asarray(take("masks"), dtype=np.object_)[:n][keep]]
    height, width = int(image_size[0]), int(image_size[1])
    masks = torch.from_numpy(decode_rles(counts, height, width)).float()
    names = [class_names[i] if 0 <= i < len(class_names) else str(i) for i in labels.tolist()]
    return Detections(boxes, torch.from_numpy(scores[keep].copy()), labels, names,
                      torch.zeros((len(keep), 0, 0), dtype=torch.float32), (height, width), source, masks=masks)
