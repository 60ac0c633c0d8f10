"""ONNX export (portable and TensorRT-target graphs), verification against PyTorch, engine building."""
