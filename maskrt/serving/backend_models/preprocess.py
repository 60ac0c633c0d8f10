"""Ensemble step 1 (python backend): encoded images -> canvases and sizes (:func:`maskrt.serving.steps.preprocess`).

Needs maskrt (and numpy<2) in the server's Python; reads the model's metadata from ``maskrt_meta.json`` beside it.
An image that cannot be read fails its own request with a one-line reason.
"""

import triton_python_backend_utils as pb_utils

from maskrt.core.errors import MaskrtError, one_line
from maskrt.serving.steps import load_step_meta, preprocess


class TritonPythonModel:
    def initialize(self, args):
        self.meta = load_step_meta(args)

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
