"""``maskrt serve``'s model for Triton's python backend: batches go to a maskrt worker process over a pipe.

Copied into the model's version folder with ``maskrt_wire.py`` (:mod:`maskrt.serving.wire`). The config's
parameters say how to start the worker (``maskrt_worker_command``, a JSON list; ``maskrt_worker_env``, a JSON
object added to the environment; ``maskrt_worker_cwd``). Every image of a request that is not a readable image
fails that request alone, with the worker's one-line reason; the other requests of the batch are answered.
"""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import triton_python_backend_utils as pb_utils

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import maskrt_wire as wire


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        self.max_detections = int(params["maskrt_max_detections"])
        env = dict(os.environ)
        env.update(json.loads(params.get("maskrt_worker_env", "{}")))
        self.lock = threading.Lock()
        self.worker = subprocess.Popen(json.loads(params["maskrt_worker_command"]), stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, env=env, cwd=params.get("maskrt_worker_cwd") or None)
        try:
            header, _ = wire.read_message(self.worker.stdout)
        except EOFError:
            header = {"error": "the maskrt worker exited while loading the model (see the lines above)"}
        if not header.get("ready"):
            self._stop_worker()
            raise pb_utils.TritonModelException(f"maskrt worker: {header.get('error', header)}")
        if int(header["max_detections"]) != self.max_detections:
            self._stop_worker()
            raise pb_utils.TritonModelException(f"maskrt worker: the model gives {header['max_detections']} "
                                                f"detections, the config says {self.max_detections}")

    def execute(self, requests):
        payloads, counts = [], []
        for request in requests:
            images = pb_utils.get_input_tensor_by_name(request, "image").as_numpy().reshape(-1)
            payloads += [bytes(x) for x in images]
            counts.append(len(images))
        try:
            with self.lock:
                wire.send(self.worker.stdin, {"op": "infer"}, payloads)
                header, blobs = wire.read_message(self.worker.stdout)
        except (EOFError, OSError) as e:
            message = f"the maskrt worker stopped ({e}); see the server log"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in requests]
        items = header["items"]
        decoded, at = [], 0
        for item in items:
            if "error" in item:
                decoded.append(item["error"])
                continue
            count = len(item["arrays"])
            decoded.append(wire.unpack_arrays(item["arrays"], blobs[at : at + count]))
            at += count
        responses, start = [], 0
        for count in counts:
            mine = decoded[start : start + count]
            start += count
            errors = [(i, e) for i, e in enumerate(mine) if isinstance(e, str)]
            if errors:
                i, message = errors[0]
                where = f"image {i} of {count}: " if count > 1 else ""
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(where + message)))
                continue
            outputs = []
            for name in ("num_detections", "boxes", "scores", "labels", "masks"):
                stacked = np.stack([m[name] for m in mine])
                outputs.append(pb_utils.Tensor(name, stacked))
            responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
        return responses

    def _stop_worker(self):
        worker = getattr(self, "worker", None)
        if worker is None or worker.poll() is not None:
            return
        try:
            worker.stdin.close()  # the worker ends when its input closes
            worker.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            worker.kill()
            worker.wait()

    def finalize(self):
        self._stop_worker()
