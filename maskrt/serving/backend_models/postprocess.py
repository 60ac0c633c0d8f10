"""Ensemble step 3 (python backend): the deploy contract -> the served outputs (boxes in original pixels,
masks as COCO RLE strings; :func:`maskrt.serving.steps.postprocess`). Reads ``maskrt_meta.json`` beside it."""

import json
import os

import triton_python_backend_utils as pb_utils

from maskrt.core.metadata import ModelMeta
from maskrt.serving.steps import DEPLOY_OUTPUTS, postprocess


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(folder, "maskrt_meta.json"), encoding="utf-8") as f:
            self.meta = ModelMeta.from_props(json.load(f), folder)

    def execute(self, requests):
        responses = []
        for request in requests:
            got = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                   for name in (*DEPLOY_OUTPUTS, "image_sizes", "original_sizes")}
            outputs = {k: got[k] for k in DEPLOY_OUTPUTS}
            served = postprocess(outputs, got["image_sizes"], got["original_sizes"], self.meta)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in served.items()]))
        return responses
