"""A client of a served maskrt model: :class:`RemotePredictor` gives the Predictor's results from a Triton server.

It speaks Triton's HTTP protocol through ``tritonclient`` (``pip install "maskrt[serve]"``), sends each image as
its encoded file (a path's bytes as they are on disk; arrays and tensors as PNG), keeps up to ``concurrency``
requests in flight so the server's dynamic batcher can fill its batches, and turns every answer back into
:class:`~maskrt.inference.Detections` (:func:`maskrt.serving.contract.detections_from_arrays`). It offers what
:func:`maskrt.inference.files.predict_to_folder` uses of a Predictor (``predict_iter`` with ``errors`` and
``with_images``, a context manager), so ``maskrt predict --url`` writes the same files as a local run.

The plain tritonclient equivalent of one call::

    import numpy as np, tritonclient.http as httpclient
    client = httpclient.InferenceServerClient("127.0.0.1:8000")
    image = httpclient.InferInput("image", [1, 1], "BYTES")
    image.set_data_from_numpy(np.array([[open("photo.jpg", "rb").read()]], dtype=object))
    result = client.infer("maskrt", [image])
    n = int(result.as_numpy("num_detections")[0, 0])
    boxes, scores = result.as_numpy("boxes")[0, :n], result.as_numpy("scores")[0, :n]
"""

from __future__ import annotations

import collections
import io
import json
import os
from typing import Iterable, Iterator, Optional

from maskrt.core.errors import MaskrtError, one_line
from maskrt.serving.contract import INPUT_NAME, OUTPUT_NAMES


def _tritonclient_http():
    try:
        import tritonclient.http as httpclient
    except ImportError:
        raise MaskrtError('talking to a Triton server needs tritonclient: pip install "maskrt[serve]"') from None
    return httpclient


def _server_message(error) -> str:
    """A tritonclient exception's message without its status prefix ("[500] ...")."""
    text = error.message() if hasattr(error, "message") and callable(error.message) else str(error)
    return one_line(MaskrtError(text or type(error).__name__))


class RemotePredictor:
    """Images -> :class:`~maskrt.inference.Detections` through a model that ``maskrt serve`` (or any server with
    the contract of :mod:`maskrt.serving.contract`) serves at ``url`` (``host:port`` of its HTTP endpoint).

    Args:
        url: ``host:port`` (an ``http://`` prefix is accepted).
        model_name: the served model's name.
        score_threshold: drop detections below this score.
        max_pixels: image files with more pixels are refused here, before sending (None: maskrt's default).
        concurrency: requests in flight at once.
        timeout: seconds to wait for one answer.
    """

    def __init__(self, url: str, model_name: str = "maskrt", score_threshold: float = 0.0,
                 max_pixels: Optional[int] = None, concurrency: int = 4, timeout: float = 300.0):
        from maskrt.data.images import DEFAULT_MAX_PIXELS

        httpclient = _tritonclient_http()
        if concurrency < 1:
            raise MaskrtError(f"concurrency must be >= 1, got {concurrency}")
        self.url = url[len("http://"):] if url.startswith("http://") else url
        self.model_name = model_name
        self.score_threshold = float(score_threshold)
        self.max_pixels = max_pixels or DEFAULT_MAX_PIXELS
        self.concurrency = int(concurrency)
        self._httpclient = httpclient
        try:
            self.client = httpclient.InferenceServerClient(self.url, concurrency=self.concurrency,
                                                           connection_timeout=timeout, network_timeout=timeout)
            ready = self.client.is_model_ready(model_name)
        except Exception as e:  # tritonclient raises its own and gevent's errors for an unreachable server
            raise MaskrtError(f"no Triton server answers at {self.url} ({one_line(e)}): start one with "
                              "`maskrt serve MODEL`") from None
        if not ready:
            raise MaskrtError(f"the server at {self.url} has no ready model {model_name!r} (see --model-name)")
        config = self.client.get_model_config(model_name)
        params = {k: v.get("string_value", "") for k, v in config.get("parameters", {}).items()}
        outputs = {o["name"] for o in config.get("output", [])}
        missing = [n for n in OUTPUT_NAMES if n not in outputs]
        if missing:
            raise MaskrtError(f"model {model_name!r} at {self.url} does not give maskrt's outputs (no "
                              f"{', '.join(missing)}); serve it with `maskrt serve` or `maskrt triton`")
        names = params.get("maskrt_class_names")
        self.class_names = json.loads(names) if names else []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self) -> None:
        self.client.close()

    # -- one image -----------------------------------------------------------------------------------------------------
    def encode(self, image) -> tuple[bytes, object, str]:
        """(bytes to send, the image as read ((3, H, W) uint8), source) for a path, array or tensor; MaskrtError
        for an image that cannot be read here (it is not sent)."""
        from maskrt.inference.predictor import to_uint8_chw

        tensor, source = to_uint8_chw(image, self.max_pixels)
        if isinstance(image, (str, os.PathLike)):
            with open(image, "rb") as f:
                return f.read(), tensor, source
        from PIL import Image

        buffer = io.BytesIO()
        Image.fromarray(tensor.permute(1, 2, 0).numpy()).save(buffer, format="PNG")
        return buffer.getvalue(), tensor, source

    def _inputs(self, payload: bytes):
        import numpy as np

        item = self._httpclient.InferInput(INPUT_NAME, [1, 1], "BYTES")
        item.set_data_from_numpy(np.array([[payload]], dtype=np.object_))
        return [item]

    def _outputs(self):
        return [self._httpclient.InferRequestedOutput(name, binary_data=True) for name in OUTPUT_NAMES]

    def infer_bytes(self, payload: bytes) -> dict:
        """The served outputs for one encoded image: {name: array with the batch dimension}; MaskrtError with the
        server's reason when it refuses it."""
        try:
            result = self.client.infer(self.model_name, self._inputs(payload), outputs=self._outputs())
        except self._httpclient.InferenceServerException as e:
            raise MaskrtError(_server_message(e)) from None
        return {name: result.as_numpy(name) for name in OUTPUT_NAMES}

    def _detections(self, arrays: dict, tensor, source: str):
        from maskrt.serving.contract import detections_from_arrays

        size = (int(tensor.shape[1]), int(tensor.shape[2]))
        return detections_from_arrays(arrays, size, self.class_names, source, self.score_threshold, row=0)

    # -- loops ---------------------------------------------------------------------------------------------------------
    def predict(self, images: Iterable) -> list:
        return list(self.predict_iter(images))

    def predict_iter(self, images: Iterable, errors: str = "raise", with_images: bool = False) -> Iterator:
        """Detections image by image, in order, as :meth:`maskrt.inference.Predictor.predict_iter` gives them
        (``errors="yield"``: an :class:`~maskrt.inference.predictor.ImageError` takes the place of an image that
        cannot be read here or that the server refuses)."""
        from maskrt.inference.predictor import ImageError

        if errors not in ("raise", "yield"):
            raise MaskrtError(f"errors must be 'raise' or 'yield', got {errors!r}")
        window: collections.deque = collections.deque()

        def finish(entry):
            request, tensor, source, failure = entry
            if failure is None:
                try:
                    result = request.get_result()
                    arrays = {name: result.as_numpy(name) for name in OUTPUT_NAMES}
                    det = self._detections(arrays, tensor, source)
                    return (det, tensor) if with_images else det
                except self._httpclient.InferenceServerException as e:
                    failure = MaskrtError(f"{source}: {_server_message(e)}")
            if errors == "raise":
                raise failure
            return ImageError(source, failure)

        for image in images:
            source = os.fspath(image) if isinstance(image, (str, os.PathLike)) else type(image).__name__
            try:
                payload, tensor, source = self.encode(image)
                request = self.client.async_infer(self.model_name, self._inputs(payload), outputs=self._outputs())
                window.append((request, tensor, source, None))
            except MaskrtError as e:
                window.append((None, None, source, e))
            while len(window) > self.concurrency:
                yield finish(window.popleft())
        while window:
            yield finish(window.popleft())
