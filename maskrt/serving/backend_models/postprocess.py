"""Ensemble step 3 (python backend): the deploy contract -> the served outputs (boxes in original pixels,
masks as COCO RLE strings; :func:`maskrt.serving.steps.postprocess`). Reads ``maskrt_meta.json`` beside it."""

import triton_python_backend_utils as pb_utils

from maskrt.serving.steps import DEPLOY_OUTPUTS, load_step_meta, postprocess


class TritonPythonModel:
    def initialize(self, args):
        self.meta = load_step_meta(args)

    def execute(self, requests):
        responses = []
        for request in requests:
            got = {name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                   for name in (*DEPLOY_OUTPUTS, "image_sizes", "original_sizes")}
            outputs = {k: got[k] for k in DEPLOY_OUTPUTS}
            served = postprocess(outputs, got["image_sizes"], got["original_sizes"], self.meta)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor(k, v) for k, v in served.items()]))
        return responses
