"""Every call into TensorRT's Python API in maskrt, and nothing else.

The only module that imports ``tensorrt`` (inside :func:`import_tensorrt`, never at import time). What to call
was decided beforehand by :func:`maskrt.backends.trt.plan.plan_build`; this layer carries it out:
:func:`build_serialized` for ``maskrt build`` and :class:`TrtSession` (deserialised engine + execution context +
per-layer profiler) for :class:`maskrt.backends.trt.runner.TrtRunner`.

Conventions that let tests/test_tensorrt_api_surface.py check every TensorRT name used here against the
TensorRT releases maskrt supports, from this file's syntax tree: the tensorrt module is always called ``trt``
(``self._trt`` on a session); every variable or attribute that holds a TensorRT object is annotated with its
class (``builder: trt.Builder = ...``; with postponed annotations these are never evaluated), and so is every
parameter that receives one; values computed from TensorRT calls are annotated with their plain type; a
function that exists for some TensorRT major versions only carries :func:`tensorrt_majors`, which enforces it.
"""

from __future__ import annotations

import functools
import os
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Optional

from maskrt.backends.trt.plan import TENSORRT_MISSING, BuildPlan, OnnxParseError, parse_version, parser_error_lines
from maskrt.core.errors import InternalError, MaskrtError, one_line

if TYPE_CHECKING:  # annotations name TensorRT's classes; at run time the module comes from import_tensorrt()
    import tensorrt as trt


def import_tensorrt():
    """The ``tensorrt`` module, or MaskrtError (one line) saying how to get it."""
    try:
        import tensorrt as trt
    except ImportError as e:
        raise MaskrtError(TENSORRT_MISSING) from e
    except Exception as e:  # a broken install (missing libnvinfer, CUDA mismatch) fails inside the package
        raise MaskrtError(f"tensorrt is installed but cannot be imported ({one_line(e)}): reinstall with "
                          "pip install maskrt[gpu] on a machine with an NVIDIA driver") from e
    return trt


def tensorrt_version() -> str:
    trt = import_tensorrt()
    return str(trt.__version__)


def tensorrt_majors(*majors: int):
    """Decorator: the function runs on these TensorRT major versions only (the planner routes to it); calling it
    on another version is a maskrt bug. Its first argument must be the tensorrt module."""

    def wrap(function):
        @functools.wraps(function)
        def gated(trt, *args, **kwargs):
            major: int = parse_version(str(trt.__version__))[0]
            if major not in majors:
                raise InternalError(f"{function.__name__} runs on TensorRT {majors} only, not {trt.__version__}")
            return function(trt, *args, **kwargs)

        gated.tensorrt_majors = majors
        return gated

    return wrap


_LOGGER: dict = {}  # tensorrt module -> {"logger": its one trt.Logger, "standard_plugins": registered}


def _logger(trt, verbose: bool):
    """The process's one logger: TensorRT keeps a single logger pointer for every builder and runtime
    (NvInferRuntime.h ILogger; a second logger is ignored with a warning), so maskrt makes one and only changes its
    severity."""
    with _LOCK:
        state: dict = _LOGGER.setdefault(trt, {})
        logger: trt.Logger = state.get("logger")
        if logger is None:
            logger = trt.Logger(trt.Logger.WARNING)
            state["logger"] = logger
    logger.min_severity = trt.Logger.VERBOSE if verbose else trt.Logger.WARNING
    return logger


def _standard_plugins(trt, logger: trt.Logger) -> None:
    """Register TensorRT's standard plugins, once per process. The ONNX parser imports RoiAlign as the
    ROIAlign_TRT plugin (version 2), which exists in the registry only after this call; engines that hold it need
    it before deserialising too (NvInferPlugin.h initLibNvInferPlugins; NVIDIA's samples/python/detectron2
    build_engine.py and infer.py call it first)."""
    with _LOCK:
        state: dict = _LOGGER.setdefault(trt, {})
        if state.get("standard_plugins"):
            return
        ok: bool = trt.init_libnvinfer_plugins(logger, "")
        if not ok:
            raise MaskrtError("TensorRT could not register its standard plugins (initLibNvInferPlugins failed): the "
                              "TensorRT installation is incomplete (libnvinfer_plugin missing?)")
        state["standard_plugins"] = True


def _dtype_names(trt) -> dict:
    return {trt.DataType.FLOAT: "float32", trt.DataType.HALF: "float16", trt.DataType.BF16: "bfloat16",
            trt.DataType.INT8: "int8", trt.DataType.INT32: "int32", trt.DataType.INT64: "int64",
            trt.DataType.BOOL: "bool", trt.DataType.UINT8: "uint8"}


# -- plugins -------------------------------------------------------------------------------------------------------
_LOCK = threading.RLock()
_LOADED: dict = {}  # plugin library path -> handle (loaded into the registry once per process)


def load_plugin_library(trt, path: str) -> None:
    """Load a plugin library into TensorRT's plugin registry, once per process, with
    ``IPluginRegistry.load_library`` only (it calls the library's getCreators and setLoggerFinder). The library
    registers nothing by itself when loaded, so there is one registration and no second path that could collide
    with it (NvInferRuntimeCommon.h loadLibrary: it fails when a creator is already registered)."""
    from maskrt.plugins import spec
    from maskrt.plugins.library import load_shared_library

    path = os.path.abspath(path)
    with _LOCK:
        if path in _LOADED:
            return
        registry: trt.IPluginRegistry = trt.get_plugin_registry()
        if _LOADED and registry.get_creator(spec.PLUGIN_NAME, spec.PLUGIN_VERSION, spec.PLUGIN_NAMESPACE) is not None:
            # Another copy of the library (another path) registered the creator already; loadLibrary would
            # refuse this one, and the registered creator serves engines built with either.
            _LOADED[path] = None
            return
        handle: object = registry.load_library(path)
        if handle is None:
            load_shared_library(path)  # when the dynamic loader refuses it, this says why (one line)
            raise MaskrtError(f"TensorRT did not register plugins from {path} (no getCreators, built for another "
                              "TensorRT, or its creator is already registered): rebuild it with `maskrt plugins build`")
        creator: trt.IPluginCreatorInterface = registry.get_creator(spec.PLUGIN_NAME, spec.PLUGIN_VERSION,
                                                                    spec.PLUGIN_NAMESPACE)
        if creator is None:
            raise MaskrtError(f"{path} registered no {spec.PLUGIN_NAME} version {spec.PLUGIN_VERSION} in namespace "
                              f"{spec.PLUGIN_NAMESPACE!r}: rebuild it with `maskrt plugins build`")
        _LOADED[path] = handle


# -- building ------------------------------------------------------------------------------------------------------
@dataclass
class BuiltEngine:
    data: bytes
    io: list
    timing_cache: Optional[bytes] = None
    notes: list = field(default_factory=list)


def _network_flags(trt, plan: BuildPlan) -> int:
    flags: int = 0
    if "STRONGLY_TYPED" in plan.network_flags:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


@tensorrt_majors(10)
def _set_fp16_builder_flag(trt, config: trt.IBuilderConfig) -> None:
    config.set_flag(trt.BuilderFlag.FP16)


def _parser_errors(parser: trt.OnnxParser) -> list[str]:
    errors = []
    for index in range(parser.num_errors):
        parser_error: trt.ParserError = parser.get_error(index)
        errors.append({"node_name": parser_error.node_name(), "node": parser_error.node(),
                       "operator": parser_error.node_operator(), "desc": parser_error.desc()})
    return parser_error_lines(errors)


def _attach_timing_cache(trt, config: trt.IBuilderConfig, path: Optional[str], notes: list):
    data = b""
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
    timing_cache: trt.ITimingCache = config.create_timing_cache(data)
    ok: bool = timing_cache is not None and config.set_timing_cache(timing_cache, False)
    if not ok and data:
        notes.append(f"timing cache {path} does not fit this TensorRT/GPU: started a new one")
        timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(timing_cache, False)
    elif data:
        notes.append(f"timing cache {path}: loaded ({len(data)} bytes)")
    return timing_cache


def build_serialized(plan: BuildPlan, onnx_path: str, log: Callable[[str], None] = lambda s: None) -> BuiltEngine:
    """Parse ``onnx_path`` and build it as ``plan`` says; return the serialized engine and its I/O tensors."""
    trt = import_tensorrt()
    if parse_version(str(trt.__version__))[:2] != parse_version(plan.trt_version)[:2]:
        raise InternalError(f"the plan is for TensorRT {plan.trt_version}, this is {trt.__version__}")
    notes: list = []
    logger: trt.Logger = _logger(trt, plan.verbose)
    _standard_plugins(trt, logger)
    if plan.plugin_library:
        load_plugin_library(trt, plan.plugin_library)
    builder: trt.Builder = trt.Builder(logger)
    network: trt.INetworkDefinition = builder.create_network(_network_flags(trt, plan))
    parser: trt.OnnxParser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.path.abspath(onnx_path)):
        lines: list = _parser_errors(parser)
        raise OnnxParseError(f"TensorRT's ONNX parser refused {os.path.basename(onnx_path)} "
                             f"({len(lines)} error(s), listed above)", lines)
    config: trt.IBuilderConfig = builder.create_builder_config()
    if plan.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan.workspace_bytes))
    if plan.optimization_level is not None:
        config.builder_optimization_level = int(plan.optimization_level)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if "FP16" in plan.builder_flags:
        _set_fp16_builder_flag(trt, config)
    if not plan.tf32:
        # TF32 is on by default (NvInfer.h BuilderFlag::kTF32): an "fp32" engine would run its fp32 convolutions
        # and GEMMs with 10-bit mantissas on Ampere and newer.
        config.clear_flag(trt.BuilderFlag.TF32)
    timing_cache: Optional[trt.ITimingCache] = (
        _attach_timing_cache(trt, config, plan.timing_cache, notes) if plan.timing_cache else None)
    for profile in plan.profiles:
        opt_profile: trt.IOptimizationProfile = builder.create_optimization_profile()
        for name, shapes in profile.items():
            opt_profile.set_shape(name, *[tuple(s) for s in shapes])
        config.add_optimization_profile(opt_profile)
    log(f"building with TensorRT {trt.__version__} ({plan.precision}, {plan.precision_route}) ...")
    serialized: trt.IHostMemory = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MaskrtError("TensorRT could not build the engine (its messages are above; --verbose shows more)")
    data: bytes = bytes(serialized)
    cache_data: Optional[bytes] = None
    if timing_cache is not None:
        timing_cache = config.get_timing_cache()
        cache_data = bytes(timing_cache.serialize()) if timing_cache is not None else None
    runtime: trt.Runtime = trt.Runtime(logger)
    engine: trt.ICudaEngine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise MaskrtError("TensorRT built an engine it cannot deserialise (its messages are above)")
    return BuiltEngine(data=data, io=engine_io(trt, engine), timing_cache=cache_data, notes=notes)


def engine_io(trt, engine: trt.ICudaEngine) -> list[dict]:
    """One dict per I/O tensor: name, input, dtype, shape (-1 dynamic), and min/opt/max for dynamic inputs."""
    names: dict = _dtype_names(trt)
    io = []
    for index in range(engine.num_io_tensors):
        name: str = engine.get_tensor_name(index)
        mode: trt.TensorIOMode = engine.get_tensor_mode(name)
        dtype: trt.DataType = engine.get_tensor_dtype(name)
        shape: list = [int(d) for d in engine.get_tensor_shape(name)]
        entry: dict = {"name": name, "input": mode == trt.TensorIOMode.INPUT, "dtype": names.get(dtype, str(dtype)),
                 "shape": shape}
        if entry["input"] and any(d < 0 for d in shape):
            shapes: list = engine.get_tensor_profile_shape(name, 0)
            entry["min"], entry["opt"], entry["max"] = ([int(d) for d in dims] for dims in shapes)
        io.append(entry)
    return io


# -- running -------------------------------------------------------------------------------------------------------
def _layer_profiler(trt):
    """An IProfiler that collects each layer's times (ms) across runs."""

    class LayerProfiler(trt.IProfiler):
        def __init__(self):
            super().__init__()
            self.times: dict = {}

        def report_layer_time(self, layer_name, ms):
            self.times.setdefault(layer_name, []).append(float(ms))

    return LayerProfiler()


class TrtSession:
    """A deserialised engine with one execution context. Addresses are device pointers (ints)."""

    def __init__(self, data: bytes, plugin_library: Optional[str] = None, verbose: bool = False):
        trt = import_tensorrt()
        self.version: str = str(trt.__version__)
        self._trt = trt
        self._logger: trt.Logger = _logger(trt, verbose)
        _standard_plugins(trt, self._logger)
        if plugin_library:
            load_plugin_library(trt, plugin_library)
        self._runtime: trt.Runtime = trt.Runtime(self._logger)
        self._engine: trt.ICudaEngine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise MaskrtError("TensorRT cannot deserialise the engine (truncated or corrupt, built by another "
                              "TensorRT version, or it needs a plugin library that is not loaded)")
        self._context: trt.IExecutionContext = self._engine.create_execution_context()
        if self._context is None:
            raise MaskrtError("TensorRT could not create an execution context (out of GPU memory?)")
        self.io: list = engine_io(trt, self._engine)
        self.profiler: object = None

    def set_input_shape(self, name: str, shape) -> None:
        if not self._context.set_input_shape(name, tuple(int(d) for d in shape)):
            raise MaskrtError(f"the engine does not take {name!r} with shape {'x'.join(map(str, shape))} (outside "
                              "its optimization profile?)")

    def tensor_shape(self, name: str) -> tuple:
        return tuple(int(d) for d in self._context.get_tensor_shape(name))

    def set_address(self, name: str, address: int) -> None:
        if not self._context.set_tensor_address(name, int(address)):
            raise MaskrtError(f"TensorRT refused the buffer for {name!r}")

    def enqueue(self, stream_handle: int) -> None:
        if not self._context.execute_async_v3(int(stream_handle)):
            raise MaskrtError("TensorRT's execute_async_v3 failed (its messages are above)")

    def start_layer_profile(self) -> None:
        self.profiler = _layer_profiler(self._trt)
        self._context.profiler = self.profiler

    def stop_layer_profile(self) -> dict:
        """Layer name -> list of ms (one per run since :meth:`start_layer_profile`)."""
        profiler = self.profiler
        self._context.profiler = None
        self.profiler = None
        return dict(profiler.times) if profiler is not None else {}

    def close(self) -> None:
        self._context = None
        self._engine = None
        self._runtime = None
