"""maskrt: Mask R-CNN from PyTorch to ONNX and TensorRT, with one runtime that reports latency and FPS.

Heavy packages (torch, onnxruntime, tensorrt) are imported by the subpackages that need them, never here,
so ``maskrt --help`` works with only click installed.
"""

from maskrt.core.errors import MaskrtError

__version__ = "0.1.0"

__all__ = ["MaskrtError", "__version__"]
