"""The served contract without a server: the pipe's frames, detections to outputs and back, and the ensemble's
three steps against the Predictor."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from maskrt.serving import wire
from tests.serving.helpers import SHAPES_WEIGHTS, corrupt_payloads, scene_png


def test_wire_round_trip_keeps_arrays_and_bytes():
    arrays = {"a": np.arange(12, dtype=np.float32).reshape(3, 4), "n": np.array([7], dtype=np.int32),
              "s": np.array([b"", b"abc", b"\x00\xff" * 300], dtype=object), "e": np.zeros((0, 4), np.float32)}
    described, blobs = wire.pack_arrays(arrays)
    stream = io.BytesIO()
    wire.send(stream, {"items": [{"arrays": described}]}, blobs)
    wire.send(stream, {"op": "second"})
    stream.seek(0)
    header, got_blobs = wire.read_message(stream)
    back = wire.unpack_arrays(header["items"][0]["arrays"], got_blobs)
    for name, value in arrays.items():
        assert back[name].dtype == value.dtype and back[name].shape == value.shape
        assert back[name].tolist() == value.tolist()
    assert wire.read_message(stream)[0]["op"] == "second"
    with pytest.raises(wire.WireClosed):
        wire.read_message(stream)
    truncated = io.BytesIO(stream.getvalue()[:10])
    with pytest.raises(wire.WireClosed):
        wire.read_message(truncated)


@pytest.fixture(scope="module")
def predictor():
    from maskrt.backends.select import RunnerSpec
    from maskrt.inference import Predictor

    with Predictor(RunnerSpec(SHAPES_WEIGHTS, arch="shapes").open(None), prefetch=0) as p:
        yield p


def test_detection_arrays_round_trip_and_masks_are_pycocotools_rle(predictor):
    from pycocotools import mask as mask_utils

    from maskrt.data.images import decode_image
    from maskrt.serving.contract import detection_arrays, detections_from_arrays

    image = decode_image(scene_png(3))
    det = predictor.predict([image])[0]
    k = predictor.meta.max_detections
    arrays = detection_arrays(det, k)
    n = int(arrays["num_detections"][0])
    assert n == len(det) > 0
    assert arrays["boxes"].shape == (k, 4) and arrays["masks"].shape == (k,)
    assert not arrays["boxes"][n:].any() and not arrays["scores"][n:].any() and not arrays["labels"][n:].any()
    assert all(m == b"" for m in arrays["masks"][n:])
    # Each mask string is what pycocotools itself encodes for the pasted mask at 0.5 (an independent encoder).
    binary = det.binary_masks().numpy()
    for i in range(n):
        expected = mask_utils.encode(np.asfortranarray(binary[i].astype(np.uint8)))["counts"]
        assert arrays["masks"][i] == expected
    back = detections_from_arrays(arrays, det.image_size, predictor.meta.class_names)
    assert torch.equal(back.boxes, det.boxes) and torch.equal(back.scores, det.scores)
    assert torch.equal(back.labels, det.labels) and back.names == det.names
    assert torch.equal(back.masks > 0.5, det.binary_masks())
    some = detections_from_arrays(arrays, det.image_size, predictor.meta.class_names, score_threshold=0.5)
    assert len(some) == int((det.scores >= 0.5).sum())


def test_ensemble_steps_give_the_predictors_detections(predictor):
    from maskrt.backends.select import RunnerSpec
    from maskrt.core.errors import MaskrtError
    from maskrt.data.images import decode_image
    from maskrt.serving.contract import detections_from_arrays
    from maskrt.serving.steps import CoreModel, postprocess, preprocess

    payloads = [scene_png(i) for i in (1, 2)]  # two sizes in one batch
    meta = predictor.meta
    pre = preprocess(payloads, meta)
    core = CoreModel(RunnerSpec(SHAPES_WEIGHTS, arch="shapes"))
    try:
        outputs = core.run(pre["images"], pre["image_sizes"])
    finally:
        core.close()
    served = postprocess(outputs, pre["image_sizes"], pre["original_sizes"], meta)
    local = predictor.predict([decode_image(p) for p in payloads])
    for i, det in enumerate(local):
        got = detections_from_arrays(served, det.image_size, meta.class_names, row=i)
        assert len(got) == len(det)
        torch.testing.assert_close(got.boxes, det.boxes, rtol=0, atol=1e-3)
        torch.testing.assert_close(got.scores, det.scores, rtol=0, atol=1e-5)
        assert torch.equal(got.labels, det.labels)
    for payload in corrupt_payloads().values():
        with pytest.raises(MaskrtError, match="cannot read image"):
            preprocess([payloads[0], payload], meta)
