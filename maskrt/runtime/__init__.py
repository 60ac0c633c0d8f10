"""Runners (torch, ONNX Runtime, TensorRT) under one contract, the Predictor, profiling and reports."""
