"""maskrt's native code: the fused multi-level RoIAlign (CUDA kernel, host twin, TensorRT plugin), its build and
where its libraries are found and loaded.

* :mod:`maskrt.plugins.spec`: the plugin's name, version, namespace, ONNX domain, fields and status codes;
* :mod:`maskrt.plugins.build`: ``build()`` runs CMake on ``CMakeLists.txt`` (``maskrt plugins build``);
* :mod:`maskrt.plugins.library`: where the libraries are looked for, the one loader of them, and ctypes calls
  into the kernel library (``multilevel_roi_align_host``, ``multilevel_roi_align_cuda``);

The ONNX Runtime bridge that runs plugin nodes lives with that backend (:mod:`maskrt.backends.onnxrt.bridge`).
See README.md in this folder. Nothing heavy is imported here.
"""
