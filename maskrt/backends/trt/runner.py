"""TensorRT engines under the runner contract.

``TrtRunner("model.engine")`` reads the engine's sidecar (``model.engine.json``, written by ``maskrt build``):
the maskrt metadata the Predictor needs, the I/O tensors, and the TensorRT version, GPU and plugin library the
engine was built with. Activation checks the engine against the running TensorRT and GPU *before* TensorRT
sees it (one line saying what differs and how to rebuild), loads the plugin library when the sidecar names one,
deserialises the engine and creates an execution context. Buffers are torch CUDA tensors (device pointers
through ``data_ptr()``), the work runs with ``execute_async_v3`` on the runner's own CUDA stream, optionally
replayed from a CUDA graph, and :meth:`TrtRunner.profile_layers` times each layer through TensorRT's profiler.

An engine without a sidecar: its TensorRT version and GPU cannot be checked before loading and it has no maskrt
metadata, so the runner refuses it unless ``require_metadata=False`` (then it loads, says so in ``notes``, and
takes its tensor specs from the engine itself; the Predictor cannot use it).

Nothing here imports TensorRT: the calls live in :mod:`maskrt.backends.trt.api`.
"""

from __future__ import annotations

import os
from typing import Optional

from maskrt.backends.base import Capabilities, Runner, TensorSpec
from maskrt.backends.trt import sidecar as sidecar_mod
from maskrt.core.environment import cuda_device
from maskrt.core.errors import MaskrtError
from maskrt.core.metadata import ModelMeta

_TORCH_DTYPES = ("float32", "float16", "bfloat16", "int8", "int32", "int64", "uint8", "bool")


def _torch_dtype(name: str):
    import torch

    if name not in _TORCH_DTYPES:
        raise MaskrtError(f"the engine has a {name} tensor, which maskrt cannot hold in a torch tensor")
    return getattr(torch, name)


class _Binding:
    """Buffers, shapes and (optionally) a CUDA graph for one set of input shapes."""

    def __init__(self, shapes: dict, inputs: dict, outputs: dict):
        self.shapes = shapes
        self.inputs = inputs  # static input buffers (used with CUDA graphs)
        self.outputs = outputs
        self.graph = None


# IExecutionContext::setTensorAddress (NvInferRuntime.h): input and output addresses must be 256-byte aligned
_ADDRESS_ALIGNMENT = 256
MAX_BINDINGS = 16  # input shapes whose output buffers (and CUDA-graph inputs) a TrtRunner keeps


class TrtRunner(Runner):
    """A TensorRT engine built by ``maskrt build``.

    Args:
        path: the engine file (its sidecar is ``path + ".json"``).
        device: the CUDA device, "cuda" or "cuda:N".
        cuda_graph: capture the engine's work as a CUDA graph on first use per input shape and replay it.
        plugin_library: the maskrt TensorRT plugin library; default: the one the sidecar names, else the one found
            on the plugin search path when the engine was built with one.
        require_metadata: refuse an engine without a sidecar (the Predictor needs its maskrt metadata).
        check_gpu_name: refuse a GPU other than the one the engine was built on even at the same compute
            capability (a different compute capability is always refused).
        verbose: TensorRT's verbose log.
    """

    backend = "tensorrt"

    def __init__(self, path, device: str = "cuda", cuda_graph: bool = False, plugin_library: Optional[str] = None,
                 require_metadata: bool = True, check_gpu_name: bool = True, verbose: bool = False):
        self.path = os.fspath(path)
        super().__init__(f"tensorrt:{os.path.basename(self.path)}")
        if not str(device).startswith("cuda"):
            raise MaskrtError(f"TensorRT engines run on a CUDA device, not {device!r}")
        if not os.path.isfile(self.path):
            raise MaskrtError(f"engine not found: {self.path}")
        self.device = str(device)
        self.cuda_graph = cuda_graph
        self.capabilities = Capabilities(device_timing=True, layer_profile=True, cuda_graph=cuda_graph)
        self.check_gpu_name = check_gpu_name
        self.verbose = verbose
        self.sidecar = sidecar_mod.read_sidecar(self.path)
        self.session = None
        self.stream = None
        self._bindings: dict = {}
        self._current = None
        if self.sidecar is None:
            message = sidecar_mod.missing_sidecar_message(self.path)
            if require_metadata:
                raise MaskrtError(f"{message}: rebuild it with `maskrt build`, or put its sidecar next to it")
            self.notes.append(message)
            self._inputs = self._outputs = None
        else:
            sidecar_mod.check_engine_file(self.path, self.sidecar)
            self._inputs = {n: TensorSpec(d, s) for n, (d, s) in sidecar_mod.sidecar_specs(self.sidecar["inputs"]).items()}
            self._outputs = {n: TensorSpec(d, s) for n, (d, s) in sidecar_mod.sidecar_specs(self.sidecar["outputs"]).items()}
            props = self.sidecar.get("onnx", {}).get("metadata") or {}
            if require_metadata or props:
                self.meta = ModelMeta.from_props(props, source=f"{self.path} (its sidecar)")
        if cuda_graph and not (self.sidecar or {}).get("cuda_graph_capturable", False):
            # NonMaxSuppression (and NonZero) give data-dependent shapes: TensorRT sizes and allocates them inside
            # enqueueV3 (IOutputAllocator), which a CUDA graph capture cannot hold. maskrt's graphs all have NMS.
            raise MaskrtError(f"{os.path.basename(self.path)} has layers with data-dependent shapes (NMS): TensorRT "
                              "cannot replay it from a CUDA graph; run it without --cuda-graph")
        self.plugin_library = self._plugin_library(plugin_library)

    def _plugin_library(self, explicit: Optional[str]) -> Optional[str]:
        from maskrt.plugins.library import tensorrt_plugin_library

        named = (self.sidecar or {}).get("plugin_library")
        if explicit or not named or os.path.isfile(named):
            return tensorrt_plugin_library(explicit or named, needed=False)
        # built with a plugin library that has moved since: the one on the search path
        found = tensorrt_plugin_library(None, needed=True, who=f"{self.path} needs the maskrt plugin library (built "
                                        f"with {named}, which is gone)")
        self.notes.append(f"plugin library {named} is gone; using {found}")
        return found

    # -- contract --------------------------------------------------------------------------------------------------
    def input_specs(self):
        if self._inputs is None:
            self._need_session()
        return dict(self._inputs)

    def output_specs(self):
        if self._outputs is None:
            self._need_session()
        return dict(self._outputs)

    def _need_session(self):
        if self.session is None:
            raise MaskrtError(f"{self.path} has no sidecar: its tensors are known once the runner is active")

    @property
    def cuda_stream(self):
        """The torch CUDA stream the engine runs on (for timing with CUDA events)."""
        return self.stream

    def _activate_impl(self):
        import torch

        from maskrt.backends.trt import api

        if not torch.cuda.is_available():
            raise MaskrtError("TensorRT engines run on an NVIDIA GPU: torch sees no CUDA device")
        version = api.tensorrt_version()
        gpu = cuda_device(self.device)
        if self.sidecar is not None:
            sidecar_mod.check_compatible(self.path, self.sidecar, version, gpu, self.check_gpu_name)
        with open(self.path, "rb") as f:
            data = f.read()
        with torch.cuda.device(gpu["index"]):
            session = api.TrtSession(data, self.plugin_library, self.verbose)
            self.stream = torch.cuda.Stream()
        self.session = session
        if self._inputs is None:
            specs = {t["name"]: TensorSpec(t["dtype"], tuple(None if d < 0 else d for d in t["shape"]))
                     for t in session.io}
            self._inputs = {n: s for n, s in specs.items() if any(t["name"] == n and t["input"] for t in session.io)}
            self._outputs = {n: s for n, s in specs.items() if n not in self._inputs}
        self._bindings, self._current = {}, None

    def _deactivate_impl(self):
        if self.stream is not None:
            self.stream.synchronize()
        self._bindings, self._current = {}, None
        if self.session is not None:
            self.session.close()
        self.session = None
        self.stream = None

    def synchronize(self):
        if self.stream is not None:
            self.stream.synchronize()

    def _upload_impl(self, feeds):
        import torch

        # Tensors already on the GPU were written on the caller's stream: order the engine's stream after it.
        self.stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(self.stream):
            out = {}
            for n in self._inputs:
                t = torch.as_tensor(feeds[n]).to(self.device, non_blocking=True).contiguous()
                if t.data_ptr() % _ADDRESS_ALIGNMENT:  # a view into a larger buffer: TensorRT needs aligned addresses
                    t = t.clone()
                out[n] = t
            return out

    def _bind(self, device_feeds: dict) -> _Binding:
        """Set the input shapes, allocate the outputs, set every address (once per set of input shapes)."""
        import torch

        key = tuple((n, tuple(t.shape)) for n, t in sorted(device_feeds.items()))
        binding = self._bindings.get(key)
        if binding is None:
            for name, t in device_feeds.items():
                self.session.set_input_shape(name, tuple(t.shape))
            outputs = {}
            for name, spec in self._outputs.items():
                shape = self.session.tensor_shape(name)
                if any(d < 0 for d in shape):
                    raise MaskrtError(f"output {name!r} has a data-dependent shape ({shape}); maskrt engines have "
                                      "fixed output shapes per batch size")
                outputs[name] = torch.empty(shape, dtype=_torch_dtype(spec.dtype), device=self.device)
            inputs = {n: torch.empty_like(t) for n, t in device_feeds.items()} if self.cuda_graph else {}
            binding = _Binding(dict(key), inputs, outputs)
            if len(self._bindings) >= MAX_BINDINGS:  # a dynamic-size engine sees many shapes: keep the recent ones
                oldest = next(k for k in self._bindings if k != self._current)
                del self._bindings[oldest]
            self._bindings[key] = binding
        if self._current != key:
            for name, t in device_feeds.items():
                self.session.set_input_shape(name, tuple(t.shape))
            for name, t in binding.outputs.items():
                self.session.set_address(name, t.data_ptr())
            for name, t in binding.inputs.items():
                self.session.set_address(name, t.data_ptr())
            self._current = key
        return binding

    def _execute_impl(self, device_feeds):
        import torch

        handle = self.stream.cuda_stream
        with torch.cuda.stream(self.stream):
            binding = self._bind(device_feeds)  # buffers allocated on the stream that writes them
            if not self.cuda_graph:
                for name, t in device_feeds.items():
                    self.session.set_address(name, t.data_ptr())
                self.session.enqueue(handle)
            else:
                for name, t in device_feeds.items():
                    binding.inputs[name].copy_(t, non_blocking=True)
                if binding.graph is None:
                    binding.graph = self._capture(handle)
                binding.graph.replay()
        return binding.outputs

    def _capture(self, handle):
        import torch

        self.session.enqueue(handle)  # a plain run first: TensorRT sets itself up on the first enqueue
        self.stream.synchronize()
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream, capture_error_mode="thread_local"):
                self.session.enqueue(handle)
        except Exception as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MaskrtError(f"CUDA graph capture of {os.path.basename(self.path)} failed ({first}): the engine "
                              "synchronises inside enqueue (e.g. data-dependent shapes); run without --cuda-graph") from None
        return graph

    def _download_impl(self, outputs):
        self.stream.synchronize()
        return {n: t.cpu() for n, t in outputs.items()}

    def device_outputs(self, outputs) -> dict:
        # The output buffers are reused by the next execute: copies on the engine's stream, then wait for them.
        import torch

        with torch.cuda.stream(self.stream):
            copies = {n: t.clone() for n, t in outputs.items()}
        self.stream.synchronize()
        caller = torch.cuda.current_stream(self.device)
        for t in copies.values():  # used (and freed) on the caller's stream: tell the caching allocator
            t.record_stream(caller)
        return copies

    # -- per-layer profile -----------------------------------------------------------------------------------------
    def profile_layers(self, device_feeds, iterations: int = 20) -> list[dict]:
        """Run ``iterations`` times with TensorRT's profiler attached (no CUDA graph); per-layer rows as
        :func:`layer_rows` gives them."""
        import torch

        if not self.is_active:
            raise MaskrtError("TrtRunner is not active: use it as a context manager or call activate()")
        handle = self.stream.cuda_stream
        with torch.cuda.stream(self.stream):
            self._bind(device_feeds)
        graph, self.cuda_graph = self.cuda_graph, False
        try:
            self.session.start_layer_profile()
            with torch.cuda.stream(self.stream):
                for _ in range(max(1, int(iterations))):
                    for name, t in device_feeds.items():
                        self.session.set_address(name, t.data_ptr())
                    self.session.enqueue(handle)
                    self.stream.synchronize()
        finally:
            samples = self.session.stop_layer_profile()
            self.cuda_graph = graph
            self._current = None  # graph bindings use their own input buffers
        return layer_rows(samples)


def layer_rows(samples: dict) -> list[dict]:
    """Per-layer rows from ``{layer name: [ms per run]}``: name, mean ms, share of the sum of the means (%),
    runs; slowest first."""
    rows = []
    for name, times in samples.items():
        if times:
            rows.append({"name": str(name), "mean_ms": sum(times) / len(times), "runs": len(times)})
    total = sum(r["mean_ms"] for r in rows)
    for r in rows:
        r["percent"] = 100.0 * r["mean_ms"] / total if total > 0 else 0.0
    rows.sort(key=lambda r: (-r["mean_ms"], r["name"]))
    return rows
