"""The TensorRT plugin sources, their build and load helpers, and the ONNX Runtime bridge for plugin nodes.

* :mod:`maskrt.plugins.spec`: the plugin's name, version, namespace, ONNX domain, fields and status codes;
* :mod:`maskrt.plugins.build`: ``build()`` runs CMake on ``CMakeLists.txt`` (``maskrt plugins build``);
* :mod:`maskrt.plugins.library`: where the libraries are looked for, and ctypes calls into the kernel library
  (``multilevel_roi_align_host``, ``multilevel_roi_align_cuda``);
* :mod:`maskrt.plugins.ort_bridge`: runs ``target="tensorrt"`` exports in ONNX Runtime.

See README.md in this folder. Nothing heavy is imported here.
"""
