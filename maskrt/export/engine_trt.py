"""Every call into TensorRT's Python API in maskrt, and nothing else.

The only module that imports ``tensorrt`` (inside :func:`import_tensorrt`, never at import time). What to
call was decided beforehand by :func:`maskrt.export.engine.plan_build`; this layer carries it out:
:func:`build_serialized` for ``maskrt build`` and :class:`TrtSession` (deserialised engine + execution
context + per-layer profiler) for :class:`maskrt.runtime.trt_runner.TrtRunner`.

The declarations below let ``tests/test_tensorrt_api_surface.py`` check, from this file's syntax tree, that
every TensorRT name used here exists in the TensorRT releases maskrt supports: the tensorrt module is only ever
bound to a name in :data:`TRT_MODULE_NAMES`; every local name (or ``self`` attribute) holding a TensorRT object
is listed in :data:`TRT_OBJECTS` with its class; names holding plain values computed from TensorRT calls are
listed in :data:`PLAIN_NAMES`; functions that run on some major versions only are listed in
:data:`VERSION_GATED` and start with a :func:`_gate` call.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from typing import Callable, Optional

from maskrt.errors import MaskrtError

#: Names the tensorrt module is bound to.
TRT_MODULE_NAMES = ("trt", "self._trt")

#: Local names (and ``self.`` attributes) that hold TensorRT objects -> their class in the Python API.
TRT_OBJECTS = {
    "logger": "Logger",
    "builder": "Builder",
    "network": "INetworkDefinition",
    "parser": "OnnxParser",
    "parser_error": "ParserError",
    "config": "IBuilderConfig",
    "opt_profile": "IOptimizationProfile",
    "timing_cache": "ITimingCache",
    "serialized": "IHostMemory",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "registry": "IPluginRegistry",
    "self._logger": "Logger",
    "self._runtime": "Runtime",
    "self._engine": "ICudaEngine",
    "self._context": "IExecutionContext",
}

#: Names that hold plain Python values (str, int, bool, bytes, lists, dicts, handles) or maskrt objects, including
#: values computed from TensorRT calls. Every name whose attributes this module reads is in one of the two lists.
PLAIN_NAMES = {
    "self", "plan", "os", "threading", "e", "f", "log", "notes", "ok", "data", "cache_data", "flags", "io", "name",
    "mode", "shape", "shapes", "dtype", "names", "entry", "index", "lines", "errors", "path", "handle",
    "creator", "loaded", "profiler", "version", "built", "stream_handle", "address", "dims", "profile",
    "layer_name", "ms", "major", "_LOADED", "_LOCK", "spec", "engine_mod", "times", "d", "self.version", "self.io",
    "self.profiler",
}

#: Functions that run on the listed TensorRT major versions only (the planner routes to them); the API-surface
#: test checks the names inside each against those versions' surfaces only.
VERSION_GATED = {"_set_fp16_builder_flag": (10,)}

_LOCK = threading.Lock()
_LOADED: dict = {}  # plugin library path -> handle (loaded once per process)


def import_tensorrt():
    """The ``tensorrt`` module, or MaskrtError (one line) saying how to get it."""
    from maskrt.export import engine as engine_mod

    try:
        import tensorrt as trt
    except ImportError as e:
        raise MaskrtError(engine_mod.TENSORRT_MISSING) from e
    except Exception as e:  # a broken install (missing libnvinfer, CUDA mismatch) fails inside the package
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MaskrtError(f"tensorrt is installed but cannot be imported ({first}): reinstall with "
                          "pip install maskrt[gpu] on a machine with an NVIDIA driver") from e
    return trt


def tensorrt_version() -> str:
    trt = import_tensorrt()
    return str(trt.__version__)


def _gate(trt, function: str) -> None:
    """Refuse to run a version-gated function on another major version (a planner bug, not a user error)."""
    from maskrt.export import engine as engine_mod

    major = engine_mod.parse_version(str(trt.__version__))[0]
    if major not in VERSION_GATED[function]:
        raise MaskrtError(f"internal error: {function} runs on TensorRT {VERSION_GATED[function]} only, not "
                          f"{trt.__version__}")


def _logger(trt, verbose: bool):
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    return logger


def _dtype_names(trt) -> dict:
    return {trt.DataType.FLOAT: "float32", trt.DataType.HALF: "float16", trt.DataType.BF16: "bfloat16",
            trt.DataType.INT8: "int8", trt.DataType.INT32: "int32", trt.DataType.INT64: "int64",
            trt.DataType.BOOL: "bool", trt.DataType.UINT8: "uint8"}


# -- plugins -------------------------------------------------------------------------------------------------------
def load_plugin_library(trt, path: str) -> None:
    """Load a plugin library into TensorRT's plugin registry, once per process.

    The library is opened with ctypes first (its static registration runs, and a library that cannot load says
    why), then handed to ``IPluginRegistry.load_library``; when that declines (creators already registered by the
    static registration), the maskrt creator must be in the registry.
    """
    from maskrt.export import engine as engine_mod
    from maskrt.plugins import spec

    path = os.path.abspath(path)
    with _LOCK:
        if path in _LOADED:
            return
        engine_mod.dlopen_plugin_library(path)
        registry = trt.get_plugin_registry()
        handle = registry.load_library(path)
        if handle is None:
            creator = registry.get_creator(spec.PLUGIN_NAME, spec.PLUGIN_VERSION, spec.PLUGIN_NAMESPACE)
            if creator is None:
                raise MaskrtError(f"TensorRT did not register plugins from {path} (it has no getCreators, or was built "
                                  "for another TensorRT): rebuild it with `maskrt plugins build`")
        _LOADED[path] = handle


# -- building ------------------------------------------------------------------------------------------------------
@dataclass
class BuiltEngine:
    data: bytes
    io: list
    timing_cache: Optional[bytes] = None
    notes: list = field(default_factory=list)


def _network_flags(trt, plan) -> int:
    flags = 0
    if "STRONGLY_TYPED" in plan.network_flags:
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    return flags


def _set_fp16_builder_flag(trt, config) -> None:
    _gate(trt, "_set_fp16_builder_flag")
    config.set_flag(trt.BuilderFlag.FP16)


def _parser_errors(parser) -> list[str]:
    from maskrt.export import engine as engine_mod

    errors = []
    for index in range(parser.num_errors):
        parser_error = parser.get_error(index)
        errors.append({"node_name": parser_error.node_name(), "node": parser_error.node(),
                       "operator": parser_error.node_operator(), "desc": parser_error.desc()})
    return engine_mod.parser_error_lines(errors)


def _attach_timing_cache(trt, config, path: Optional[str], notes: list):
    data = b""
    if path and os.path.isfile(path):
        with open(path, "rb") as f:
            data = f.read()
    timing_cache = config.create_timing_cache(data)
    ok = timing_cache is not None and config.set_timing_cache(timing_cache, False)
    if not ok and data:
        notes.append(f"timing cache {path} does not fit this TensorRT/GPU: started a new one")
        timing_cache = config.create_timing_cache(b"")
        config.set_timing_cache(timing_cache, False)
    elif data:
        notes.append(f"timing cache {path}: loaded ({len(data)} bytes)")
    return timing_cache


def build_serialized(plan, onnx_path: str, log: Callable[[str], None] = lambda s: None) -> BuiltEngine:
    """Parse ``onnx_path`` and build it as ``plan`` says; return the serialized engine and its I/O tensors."""
    from maskrt.export import engine as engine_mod

    trt = import_tensorrt()
    if engine_mod.parse_version(str(trt.__version__))[:2] != engine_mod.parse_version(plan.trt_version)[:2]:
        raise MaskrtError(f"the plan is for TensorRT {plan.trt_version}, this is {trt.__version__}")
    notes: list = []
    logger = _logger(trt, plan.verbose)
    if plan.plugin_library:
        load_plugin_library(trt, plan.plugin_library)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, plan))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(os.path.abspath(onnx_path)):
        lines = _parser_errors(parser)
        raise engine_mod.OnnxParseError(f"TensorRT's ONNX parser refused {os.path.basename(onnx_path)} "
                                        f"({len(lines)} error(s), listed above)", lines)
    config = builder.create_builder_config()
    if plan.workspace_bytes:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(plan.workspace_bytes))
    if plan.optimization_level is not None:
        config.builder_optimization_level = int(plan.optimization_level)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED
    if "FP16" in plan.builder_flags:
        _set_fp16_builder_flag(trt, config)
    timing_cache = _attach_timing_cache(trt, config, plan.timing_cache, notes) if plan.timing_cache else None
    for profile in plan.profiles:
        opt_profile = builder.create_optimization_profile()
        for name, shapes in profile.items():
            opt_profile.set_shape(name, *[tuple(s) for s in shapes])
        config.add_optimization_profile(opt_profile)
    log(f"building with TensorRT {trt.__version__} ({plan.precision}, {plan.precision_route}) ...")
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise MaskrtError("TensorRT could not build the engine (its messages are above; --verbose shows more)")
    data = bytes(serialized)
    cache_data = None
    if timing_cache is not None:
        timing_cache = config.get_timing_cache()
        cache_data = bytes(timing_cache.serialize()) if timing_cache is not None else None
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(data)
    if engine is None:
        raise MaskrtError("TensorRT built an engine it cannot deserialise (its messages are above)")
    io = engine_io(trt, engine)
    return BuiltEngine(data=data, io=io, timing_cache=cache_data, notes=notes)


def engine_io(trt, engine) -> list[dict]:
    """One dict per I/O tensor: name, input, dtype, shape (-1 dynamic), and min/opt/max for dynamic inputs."""
    names = _dtype_names(trt)
    io = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        mode = engine.get_tensor_mode(name)
        dtype = engine.get_tensor_dtype(name)
        shape = [int(d) for d in engine.get_tensor_shape(name)]
        entry = {"name": name, "input": mode == trt.TensorIOMode.INPUT, "dtype": names.get(dtype, str(dtype)),
                 "shape": shape}
        if entry["input"] and any(d < 0 for d in shape):
            shapes = engine.get_tensor_profile_shape(name, 0)
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
        self.version = str(trt.__version__)
        self._trt = trt
        self._logger = _logger(trt, verbose)
        if plugin_library:
            load_plugin_library(trt, plugin_library)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(data)
        if self._engine is None:
            raise MaskrtError("TensorRT cannot deserialise the engine (truncated or corrupt, built by another "
                              "TensorRT version, or it needs a plugin library that is not loaded)")
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise MaskrtError("TensorRT could not create an execution context (out of GPU memory?)")
        self.io = engine_io(trt, self._engine)
        self.profiler = None

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
