"""The TensorRT plugin sources, their build and load helpers, and the ONNX Runtime bridge for plugin nodes."""
