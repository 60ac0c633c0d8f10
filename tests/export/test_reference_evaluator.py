"""A second, independent ONNX executor (onnx.reference) on a tiny exported model agrees with ONNX Runtime."""

from __future__ import annotations

import numpy as np
import torch
from onnx.reference import ReferenceEvaluator
from onnx.reference.op_run import OpRun

from maskrt.backends import OrtRunner
from maskrt.export import to_onnx
from tests.model.helpers import small_model, uint8_images


class GatherElements(OpRun):
    """onnx.reference's own GatherElements goes through numpy.choose, which takes at most 64 choices, so it
    fails on axes longer than 64; this is the same op through numpy.take_along_axis."""

    def _run(self, data, indices, axis=None):
        return (np.take_along_axis(data, np.where(indices < 0, indices + data.shape[axis], indices), axis=axis),)


def test_reference_evaluator_agrees_with_onnxruntime(tmp_path):
    model = small_model(min_size=64, max_size=64, rpn_pre_nms_top_n_test=50, rpn_post_nms_top_n_test=20,
                        box_detections_per_img=5)
    path = tmp_path / "tiny.onnx"
    to_onnx(model, path, input_size=(64, 64))
    images = uint8_images(1, 64, 64, seed=2)
    sizes = torch.tensor([[64, 45]], dtype=torch.int32)  # the image fills part of its canvas
    reference = ReferenceEvaluator(str(path), new_ops=[GatherElements])
    ref = dict(zip(["num_detections", "boxes", "scores", "labels", "masks"],
                   reference.run(None, {"images": images.numpy(), "image_sizes": sizes.numpy()})))
    with OrtRunner(path) as runner:
        out = runner.infer({"images": images, "image_sizes": sizes})
    n = int(out["num_detections"][0])
    assert n > 0 and int(ref["num_detections"][0]) == n
    assert np.array_equal(ref["labels"], out["labels"].numpy())
    np.testing.assert_allclose(ref["boxes"], out["boxes"].numpy(), rtol=0, atol=1e-3)
    np.testing.assert_allclose(ref["scores"], out["scores"].numpy(), rtol=0, atol=1e-4)
    np.testing.assert_allclose(ref["masks"], out["masks"].numpy(), rtol=0, atol=1e-3)
    # and both agree with PyTorch
    from maskrt.model import DeployMaskRCNN

    with torch.inference_mode():
        t = DeployMaskRCNN(model)(images, sizes)
    np.testing.assert_allclose(ref["boxes"], t[1].numpy(), rtol=0, atol=1e-3)
