"""ONNX export (portable graphs), verification against PyTorch.

Heavy packages (torch, onnx, onnxruntime) are imported inside the functions.
"""

from maskrt.export.onnx_export import DEFAULT_INPUT_SIZE, DEFAULT_OPSET, ExportResult, to_onnx

__all__ = ["DEFAULT_INPUT_SIZE", "DEFAULT_OPSET", "ExportResult", "to_onnx"]
