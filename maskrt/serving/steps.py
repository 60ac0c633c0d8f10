"""The three steps of the ensemble that ``maskrt triton`` writes, as plain functions on numpy arrays.

The python-backend models of the repository (``backend_models/preprocess.py``, ``core.py``, ``postprocess.py``)
are thin over these, so what they compute is the Predictor's own code (:func:`maskrt.inference.predictor.prepare`,
:func:`~maskrt.inference.predictor.make_batch`, :func:`~maskrt.inference.predictor.postprocess`) and is tested here
without a server: preprocess -> core -> postprocess gives the Predictor's detections.

Arrays (B images):

* :func:`preprocess`: encoded images -> ``images`` uint8 (B, 3, H, W), ``image_sizes`` int32 (B, 2) (each image's
  size on its canvas), ``original_sizes`` int32 (B, 2);
* the core model (:class:`CoreModel`, or the ONNX / TensorRT file itself): the deploy contract;
* :func:`postprocess`: the deploy contract + the sizes -> the served outputs (:mod:`maskrt.serving.contract`).
"""

from __future__ import annotations

import json
import os
from typing import Optional, Sequence

import numpy as np

from maskrt.core.metadata import ModelMeta

DEPLOY_OUTPUTS = ("num_detections", "boxes", "scores", "labels", "masks")
STEP_META = "maskrt_meta.json"  # the model's metadata beside the pre- and post-processing steps' model.py


def load_step_meta(args: dict) -> ModelMeta:
    """The metadata a python-backend step reads in ``initialize``: :data:`STEP_META` in its version folder (``args``
    are Triton's initialize arguments)."""
    folder = os.path.join(args["model_repository"], args["model_version"])
    with open(os.path.join(folder, STEP_META), encoding="utf-8") as f:
        return ModelMeta.from_props(json.load(f), folder)


def preprocess(payloads: Sequence[bytes], meta: ModelMeta, max_pixels: Optional[int] = None) -> dict:
    """Encoded images -> canvases (padded to the largest of the batch for a dynamic-size model) and sizes;
    MaskrtError for a payload that is not a readable image."""
    from maskrt.data.images import DEFAULT_MAX_PIXELS, decode_image
    from maskrt.inference.predictor import make_batch, prepare

    prepared = [prepare(decode_image(p, max_pixels or DEFAULT_MAX_PIXELS), meta) for p in payloads]
    batch = make_batch(prepared, None, image_sizes=True)
    return {"images": batch.feeds["images"].numpy(), "image_sizes": batch.feeds["image_sizes"].numpy(),
            "original_sizes": np.array([p.original for p in prepared], dtype=np.int32).reshape(-1, 2)}


class CoreModel:
    """The deploy contract through a maskrt runner (the ``python`` platform's core model): any batch, run in the
    runner's own batch size when it has one (the last chunk padded)."""

    def __init__(self, spec):
        self.runner = spec.open(None)
        self.runner.activate()
        self.meta = self.runner.meta
        self.takes_sizes = "image_sizes" in self.runner.input_specs()

    def close(self) -> None:
        self.runner.deactivate()

    def run(self, images: np.ndarray, image_sizes: np.ndarray) -> dict:
        import torch

        count = images.shape[0]
        step = self.runner.batch or count
        parts = []
        for start in range(0, count, step):
            chunk = torch.from_numpy(np.ascontiguousarray(images[start:start + step]))
            sizes = torch.from_numpy(np.ascontiguousarray(image_sizes[start:start + step]))
            real = chunk.shape[0]
            if self.runner.batch and real < step:  # pad a fixed-batch runner's last chunk with blank canvases
                chunk = torch.cat([chunk, torch.zeros((step - real, *chunk.shape[1:]), dtype=chunk.dtype)])
                sizes = torch.cat([sizes, sizes[-1:].expand(step - real, 2)])
            feeds = {"images": chunk}
            if self.takes_sizes:
                feeds["image_sizes"] = sizes.to(torch.int32)
            out = self.runner.infer(feeds)
            parts.append({k: out[k][:real].cpu().numpy() for k in DEPLOY_OUTPUTS})
        return {k: np.concatenate([p[k] for p in parts]) for k in DEPLOY_OUTPUTS}


def postprocess(outputs: dict, image_sizes: np.ndarray, original_sizes: np.ndarray, meta: ModelMeta) -> dict:
    """The deploy contract of B images + their sizes -> the served outputs with the batch dimension (boxes in
    original pixels, masks as RLE)."""
    import torch

    from maskrt.inference.predictor import Prepared
    from maskrt.inference.predictor import postprocess as postprocess_one
    from maskrt.serving.contract import detection_arrays

    tensors = {k: torch.from_numpy(np.ascontiguousarray(outputs[k])) for k in DEPLOY_OUTPUTS}
    tensors["num_detections"] = tensors["num_detections"].reshape(-1)
    empty = torch.zeros((3, 0, 0), dtype=torch.uint8)
    items = []
    for i in range(len(image_sizes)):
        resized = (int(image_sizes[i][0]), int(image_sizes[i][1]))
        original = (int(original_sizes[i][0]), int(original_sizes[i][1]))
        det = postprocess_one(tensors, i, Prepared(empty, resized, original, ""), meta.class_names)
        items.append(detection_arrays(det, meta.max_detections))
    return {k: np.stack([item[k] for item in items]) for k in items[0]} if items else {}
