"""Names and numbers shared by the C++ plugin, its ONNX node and the Python helpers (no heavy imports).

The TensorRT plugin is found by (name, version, namespace); the ONNX node that stands for it carries the name as
its ``op_type`` and the version and namespace as the string attributes ``plugin_version`` and
``plugin_namespace`` (what TensorRT's ONNX parser reads when it falls back to a plugin). Its other attributes
are the plugin's fields, :data:`PLUGIN_FIELDS`.
"""

from __future__ import annotations

PLUGIN_NAME = "MaskrtMultilevelRoIAlign"
PLUGIN_VERSION = "1"
PLUGIN_NAMESPACE = "maskrt"

#: Custom ONNX domain of the plugin node (TensorRT's parser matches on op_type and ignores the domain).
ONNX_DOMAIN = "com.maskrt.tensorrt"
ONNX_DOMAIN_VERSION = 1

#: The plugin's fields: ONNX attribute name -> (ONNX attribute type, TensorRT PluginFieldType).
PLUGIN_FIELDS = {
    "output_height": ("INT", "kINT32"),
    "output_width": ("INT", "kINT32"),
    "sampling_ratio": ("INT", "kINT32"),
    "aligned": ("INT", "kINT32"),
    "mode": ("STRING", "kCHAR"),
    "canonical_scale": ("INT", "kINT32"),
    "canonical_level": ("INT", "kINT32"),
    "scales": ("FLOATS", "kFLOAT32"),
}

#: Library base names (``lib<name>.so`` on Linux).
KERNEL_LIBRARY = "maskrt_mlra"  # host twin + CUDA launcher (CUDA runtime linked statically)
HOST_LIBRARY = "maskrt_mlra_host"  # host twin only: loads on machines without CUDA
TENSORRT_LIBRARY = "maskrt_trt_plugins"  # the TensorRT plugin (IPluginV3), kernel included

ABI_VERSION = 1
MAX_LEVELS = 8
MAX_ADAPTIVE_GRID = 512

FLOAT32 = 0
FLOAT16 = 1
MODES = {"avg": 0, "max": 1}

#: Status codes of the C launchers.
STATUS = {
    0: "ok",
    1: "a required pointer is null",
    2: f"num_levels must be between 1 and {MAX_LEVELS}",
    3: "tensor shapes disagree or are out of range",
    4: "unsupported dtype combination",
    5: "invalid argument (mode, scale, canonical scale or output size)",
    6: "CUDA kernel launch failed",
    7: "library built without CUDA",
}
OK = 0
ERR_NULL_POINTER = 1
ERR_NUM_LEVELS = 2
ERR_SHAPE = 3
ERR_DTYPE = 4
ERR_ARGUMENT = 5
ERR_CUDA = 6
ERR_NO_CUDA = 7
