"""The ONNX Runtime backend: :class:`~maskrt.backends.onnxrt.runner.OrtRunner`, and the bridge that runs maskrt's
TensorRT plugin nodes in ONNX Runtime (:mod:`maskrt.backends.onnxrt.bridge`)."""
