"""Ensemble step 2 for ``--platform python`` (python backend): the deploy contract through a maskrt runner
(:class:`maskrt.serving.steps.CoreModel`) on the model file beside this one.

The config's parameters name the file (``maskrt_model_file``) and, for a checkpoint, its preset
(``maskrt_arch``); ``maskrt_backend`` and ``maskrt_device`` choose how it runs.
"""

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

from maskrt.backends.select import RunnerSpec
from maskrt.serving.steps import DEPLOY_OUTPUTS, CoreModel


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        folder = os.path.join(args["model_repository"], args["model_version"])
        spec = RunnerSpec(os.path.join(folder, params["maskrt_model_file"]), backend=params.get("maskrt_backend", "auto"),
                          device=params.get("maskrt_device", "cpu"), arch=params.get("maskrt_arch") or None)
        self.model = CoreModel(spec)

    def execute(self, requests):
        images, sizes, counts = [], [], []
        for request in requests:
            images.append(pb_utils.get_input_tensor_by_name(request, "images").as_numpy())
            sizes.append(pb_utils.get_input_tensor_by_name(request, "image_sizes").as_numpy())
            counts.append(images[-1].shape[0])
        if len({a.shape[1:] for a in images}) == 1:  # one runner call for the whole dynamic batch
            outputs = self.model.run(np.concatenate(images), np.concatenate(sizes))
            parts, start = [], 0
            for n in counts:
                parts.append({k: v[start:start + n] for k, v in outputs.items()})
                start += n
        else:
            parts = [self.model.run(a, s) for a, s in zip(images, sizes)]
        return [pb_utils.InferenceResponse([pb_utils.Tensor(k, part[k]) for k in DEPLOY_OUTPUTS]) for part in parts]

    def finalize(self):
        self.model.close()
