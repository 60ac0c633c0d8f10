"""The process that runs the model for ``maskrt serve``: ``python -m maskrt.serving.worker --model ...``.

Triton's python backend runs ``model.py`` inside its stub interpreter, which must see numpy < 2 (the stub reads
arrays with numpy 1's layout) and so cannot import torch or ONNX Runtime built for numpy 2. The stub therefore
starts this worker under the normal interpreter and passes it each batch over a pipe (:mod:`maskrt.serving.wire`):
the encoded images of a batch go in, and for each image either its outputs (:mod:`maskrt.serving.contract`) or a
one-line error come back. The worker ends when its input is closed.

Messages, in order: the worker first sends ``{"ready": true, "max_detections", "class_names", "model", "batch"}``
(or ``{"error": ...}`` and exits 1); then for each ``{"op": "infer"}`` with one blob per image it answers
``{"items": [{"error": ...} | {"arrays": [...]}, ...]}`` with the arrays' blobs in item order.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Optional

from maskrt.core.errors import MaskrtError, one_line
from maskrt.serving import wire


class ModelWorker:
    """A model behind the served contract: encoded images in, per-image outputs or errors out.

    Args:
        spec: a :class:`maskrt.backends.select.RunnerSpec`.
        max_batch: images per runner call for a model that takes any batch (a fixed-batch model takes its own).
        max_pixels: larger images are refused (None: maskrt's default limit).
    """

    def __init__(self, spec, max_batch: int = 8, max_pixels: Optional[int] = None):
        from maskrt.inference import Predictor

        runner = spec.open(None)
        batch = None if runner.batch is not None else max_batch
        self.predictor = Predictor(runner, batch=batch, max_pixels=max_pixels, prefetch=0,
                                   notify=lambda message: print(f"note: {message}", file=sys.stderr, flush=True))
        self.predictor.__enter__()
        self.meta = self.predictor.meta
        self.name = spec.name()

    def close(self) -> None:
        self.predictor.__exit__(None, None, None)

    def infer(self, payloads: list) -> list:
        """One entry per payload: a dict of output arrays (:func:`maskrt.serving.contract.detection_arrays`), or a
        MaskrtError for a payload that is not a readable image."""
        from maskrt.data.images import decode_image
        from maskrt.serving.contract import detection_arrays

        results: list = [None] * len(payloads)
        images, where = [], []
        for i, payload in enumerate(payloads):
            try:
                images.append(decode_image(payload, self.predictor.max_pixels))
                where.append(i)
            except MaskrtError as e:
                results[i] = e
        if images:
            for i, det in zip(where, self.predictor.predict_iter(images)):
                results[i] = detection_arrays(det, self.meta.max_detections)
        return results


def serve_pipe(worker: ModelWorker, inp, out) -> None:
    """Answer infer messages from ``inp`` on ``out`` until ``inp`` closes."""
    while True:
        try:
            header, payloads = wire.read_message(inp)
        except wire.WireClosed:
            return
        if header.get("op") != "infer":
            wire.send(out, {"error": f"unknown request {header.get('op')!r}"})
            continue
        items, blobs = [], []
        try:
            results = worker.infer(payloads)
        except MaskrtError as e:  # the whole batch failed (e.g. the runner refused it): every image says why
            results = [e] * len(payloads)
        for result in results:
            if isinstance(result, MaskrtError):
                items.append({"error": one_line(result)})
            else:
                described, arrays = wire.pack_arrays(result)
                items.append({"arrays": described})
                blobs += arrays
        wire.send(out, {"items": items}, blobs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m maskrt.serving.worker", description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="model file (.onnx, .engine, checkpoint)")
    parser.add_argument("--arch")
    parser.add_argument("--num-classes", type=int)
    parser.add_argument("--input-size")
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-pixels", type=int)
    args = parser.parse_args(argv)
    # The pipe is this process's stdout: anything else printed (by maskrt or a library) goes to stderr instead.
    out = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inp = sys.stdin.buffer
    try:
        from maskrt.backends.select import RunnerSpec
        from maskrt.core.parsing import parse_size

        kwargs = {"arch": args.arch}
        if args.num_classes is not None:
            kwargs["num_classes"] = args.num_classes
        if args.input_size:
            kwargs["input_size"] = parse_size(args.input_size)
        spec = RunnerSpec(args.model, backend=args.backend, device=args.device, **kwargs)
        worker = ModelWorker(spec, args.max_batch, args.max_pixels)
    except MaskrtError as e:
        wire.send(out, {"error": one_line(e)})
        return 1
    try:
        meta = worker.meta
        wire.send(out, {"ready": True, "max_detections": meta.max_detections, "class_names": list(meta.class_names),
                        "model": worker.name, "batch": worker.predictor.batch})
        serve_pipe(worker, inp, out)
    except (BrokenPipeError, KeyboardInterrupt):
        pass
    finally:
        worker.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
