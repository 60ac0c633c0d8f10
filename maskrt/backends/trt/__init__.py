"""The TensorRT backend: :mod:`~maskrt.backends.trt.plan` (options and the build plan, pure),
:mod:`~maskrt.backends.trt.sidecar` (the engine's JSON sidecar and compatibility checks),
:mod:`~maskrt.backends.trt.api` (the only module that imports tensorrt), :mod:`~maskrt.backends.trt.build`
(``build_engine``) and :mod:`~maskrt.backends.trt.runner` (``TrtRunner``)."""
