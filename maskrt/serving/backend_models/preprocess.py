"""Ensemble step 1 (python backend): encoded images -> canvases and sizes (:func:`maskrt.serving.steps.preprocess`).

Needs maskrt (and numpy<2) in the server's Python; reads the model's metadata from ``maskrt_meta.json`` beside it.
An image that cannot be read fails its own request with a one-line reason.
"""

import json
import os

import triton_python_backend_utils as pb_utils

from maskrt.core.errors import MaskrtError, one_line
from maskrt.core.metadata import ModelMeta
from maskrt.serving.steps import preprocess


class TritonPythonModel:
    def initialize(self, args):
        folder = os.path.join(args["model_repository"], args["model_version"])
        with open(os.path.join(folder, "maskrt_meta.json"), encoding="utf-8") as f:
            self.meta = ModelMeta.from_props(json.load(f), folder)

    def execute(self, requests):
        responses = []
        for request in requests:
            payloads = [bytes(x) for x in pb_utils.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)]
            try:
                arrays = preprocess(payloads, self.meta)
            except MaskrtError as e:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(one_line(e))))
                continue
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in arrays.items()]))
        return responses
