"""Backends: per backend, how to get a runnable model and how to run it, side by side.

* :mod:`maskrt.backends.base`: the runner contract (:class:`Runner`, :class:`Capabilities`);
* :mod:`maskrt.backends.torch`: ``TorchRunner`` (+ CUDA graphs);
* :mod:`maskrt.backends.onnxrt`: ``OrtRunner`` (+ the bridge that runs maskrt plugin nodes in ONNX Runtime);
* :mod:`maskrt.backends.trt`: the build plan, the sidecar, the one module that imports tensorrt, ``build_engine``
  and ``TrtRunner``;
* :mod:`maskrt.backends.select`: ``RunnerSpec``, the only place that picks a backend for a file.

The runner classes are imported on first use (``from maskrt.backends import OrtRunner``), so importing this
package loads neither torch nor onnxruntime.
"""

_LAZY = {
    "Runner": "maskrt.backends.base",
    "Capabilities": "maskrt.backends.base",
    "TensorSpec": "maskrt.backends.base",
    "TorchRunner": "maskrt.backends.torch.runner",
    "OrtRunner": "maskrt.backends.onnxrt.runner",
    "TrtRunner": "maskrt.backends.trt.runner",
    "RunnerSpec": "maskrt.backends.select",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
