"""Runners (torch, ONNX Runtime) under one contract, the Predictor and Detections."""

from maskrt.runtime.metadata import ModelMeta
from maskrt.runtime.predictor import Detections, Predictor
from maskrt.runtime.runners import OrtRunner, Runner, TensorSpec, TorchRunner

__all__ = ["Detections", "ModelMeta", "OrtRunner", "Predictor", "Runner", "TensorSpec", "TorchRunner"]
