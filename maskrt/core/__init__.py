"""The light core every layer may use: errors, atomic files, formatting, option parsing, the environment, ONNX
file inspection and the model metadata format.

Nothing here imports torch, onnxruntime or tensorrt at module level; ``onnx`` and ``numpy`` only inside the
functions that read ONNX files. Every other maskrt package sits above this one.
"""
