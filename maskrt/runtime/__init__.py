"""Runners (torch, ONNX Runtime, TensorRT) under one contract, the Predictor and Detections.

``TrtRunner`` is imported on first use (``from maskrt.runtime import TrtRunner``); TensorRT itself only when a
runner is activated.
"""

from maskrt.runtime.metadata import ModelMeta
from maskrt.runtime.predictor import Detections, Predictor
from maskrt.runtime.runners import OrtRunner, Runner, TensorSpec, TorchRunner

__all__ = ["Detections", "ModelMeta", "OrtRunner", "Predictor", "Runner", "TensorSpec", "TorchRunner", "TrtRunner"]


def __getattr__(name):
    if name == "TrtRunner":
        from maskrt.runtime.trt_runner import TrtRunner

        return TrtRunner
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
