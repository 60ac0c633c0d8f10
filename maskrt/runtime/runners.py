"""Runners: one contract for torch, ONNX Runtime (and TensorRT later).

A runner takes fixed tensors in and gives fixed tensors out: ``images`` uint8 (B, 3, H, W) at the export size
to the deploy contract's outputs. Pre- and post-processing live in :class:`maskrt.runtime.Predictor`, once.

Use as a context manager (``with OrtRunner(path) as r: r.infer({"images": x})``); ``infer`` checks the runner
is active and the feeds match ``input_specs`` and then calls the backend's ``_infer_impl``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

from maskrt.errors import MaskrtError

OUTPUT_NAMES = ("num_detections", "boxes", "scores", "labels", "masks")


@dataclass(frozen=True)
class TensorSpec:
    """dtype as a string ("uint8", "float32", ...); shape with None for a dynamic dimension."""

    dtype: str
    shape: tuple


class Runner:
    backend = "base"

    def __init__(self, name: str):
        self.name = name
        self.is_active = False
        self.meta = None  # ModelMeta

    # -- lifecycle -------------------------------------------------------------------------------------------
    def activate(self) -> "Runner":
        if not self.is_active:
            self._activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate_impl()
            self.is_active = False

    def __enter__(self) -> "Runner":
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- contract --------------------------------------------------------------------------------------------
    def input_specs(self) -> dict[str, TensorSpec]:
        raise NotImplementedError

    def output_specs(self) -> dict[str, TensorSpec]:
        raise NotImplementedError

    @property
    def batch(self) -> Optional[int]:
        """The fixed batch size, or None when the model takes any batch."""
        return self.input_specs()["images"].shape[0]

    def infer(self, feeds: Mapping[str, object]) -> dict[str, "object"]:
        """Run one batch. ``feeds["images"]``: uint8 (B, 3, H, W) torch tensor or numpy array.

        Returns the outputs as torch tensors, keyed by name.
        """
        if not self.is_active:
            raise MaskrtError(f"{type(self).__name__} is not active: use it as a context manager or call activate()")
        self._check_feeds(feeds)
        return self._infer_impl(feeds)

    # -- stages, for profiling: infer == download(execute(upload(feeds))) ---------------------------------------
    device = "cpu"

    def upload(self, feeds: Mapping[str, object]) -> dict:
        """Host-to-device step: checked feeds -> what ``execute`` takes (device tensors, numpy arrays...)."""
        if not self.is_active:
            raise MaskrtError(f"{type(self).__name__} is not active: use it as a context manager or call activate()")
        self._check_feeds(feeds)
        return self._upload_impl(feeds)

    def execute(self, device_feeds) -> object:
        """The model alone, on uploaded feeds; returns backend outputs (possibly still on the device)."""
        return self._execute_impl(device_feeds)

    def download(self, outputs) -> dict:
        """Device-to-host step: backend outputs -> CPU torch tensors keyed by name."""
        return self._download_impl(outputs)

    def synchronize(self) -> None:
        """Wait for the device to finish queued work (a no-op for host backends)."""

    def _infer_impl(self, feeds):
        return self._download_impl(self._execute_impl(self._upload_impl(feeds)))

    def _upload_impl(self, feeds):
        return feeds

    def _execute_impl(self, device_feeds):
        raise NotImplementedError

    def _download_impl(self, outputs):
        return outputs

    def _check_feeds(self, feeds: Mapping[str, object]) -> None:
        specs = self.input_specs()
        missing = [k for k in specs if k not in feeds]
        if missing:
            raise MaskrtError(f"missing input(s) {missing}; the model takes {list(specs)}")
        for name, spec in specs.items():
            value = feeds[name]
            shape = tuple(value.shape)
            dtype = str(value.dtype).replace("torch.", "")
            if dtype != spec.dtype:
                raise MaskrtError(f"input {name!r} must be {spec.dtype}, got {dtype}")
            if len(shape) != len(spec.shape) or any(s is not None and s != d for s, d in zip(spec.shape, shape)):
                want = "x".join("?" if s is None else str(s) for s in spec.shape)
                raise MaskrtError(f"input {name!r} must have shape {want}, got {'x'.join(map(str, shape))}")

    def _activate_impl(self) -> None:
        pass

    def _deactivate_impl(self) -> None:
        pass



def _contract_output_specs(batch, k: int, m: int) -> dict[str, TensorSpec]:
    return {
        "num_detections": TensorSpec("int32", (batch,)),
        "boxes": TensorSpec("float32", (batch, k, 4)),
        "scores": TensorSpec("float32", (batch, k)),
        "labels": TensorSpec("int32", (batch, k)),
        "masks": TensorSpec("float32", (batch, k, m, m)),
    }


class TorchRunner(Runner):
    """The deploy forward of a :class:`maskrt.model.MaskRCNN` in PyTorch, on CPU or CUDA.

    Args:
        model: the eager model (weights loaded).
        input_size: (H, W) of the uint8 input (the export size).
        batch: fixed batch size, or None for any.
        device: "cpu" or "cuda[:N]".
        precision: "fp32", or "fp16" (half network, fp32 post-processing; meant for CUDA).
        cuda_graph: capture the network pieces of the deploy forward as CUDA graphs and replay them
            (see :mod:`maskrt.runtime.cuda_graphs`); CUDA only.
    """

    backend = "torch"

    def __init__(self, model, input_size=(800, 1344), batch: Optional[int] = 1, device: str = "cpu",
                 precision: str = "fp32", class_names=None, cuda_graph: bool = False):
        super().__init__(f"torch:{getattr(model, 'preset', 'model')}")
        if precision not in ("fp32", "fp16"):
            raise MaskrtError(f"precision must be fp32 or fp16, got {precision!r}")
        if cuda_graph and not device.startswith("cuda"):
            raise MaskrtError("CUDA graphs need --device cuda")
        from maskrt.export.onnx_export import parse_size
        from maskrt.runtime.metadata import ModelMeta

        self.model = model
        self.input_size = parse_size(input_size)
        self.device = device
        self.precision = precision
        self.cuda_graph = cuda_graph
        self.meta = ModelMeta.from_model(model, self.input_size, batch, precision, class_names)
        self._batch = batch
        self._deploy = None

    def input_specs(self):
        return {"images": TensorSpec("uint8", (self._batch, 3, *self.input_size))}

    def output_specs(self):
        return _contract_output_specs(self._batch, self.meta.max_detections, self.model.roi_heads.mask_output_size * 2)

    def _activate_impl(self):
        import torch

        from maskrt.model import DeployMaskRCNN

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise MaskrtError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
        self.model.eval()
        deploy = DeployMaskRCNN(self.model, self.precision).to(self.device).eval()
        if self.cuda_graph:
            from maskrt.runtime.cuda_graphs import graph_pieces

            deploy.model = graph_pieces(deploy.model, mode="cuda")
        self._deploy = deploy

    def _deactivate_impl(self):
        self._deploy = None

    def synchronize(self):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    def _upload_impl(self, feeds):
        import torch

        return torch.as_tensor(feeds["images"]).to(self.device, non_blocking=True)

    def _execute_impl(self, images):
        import torch

        with torch.inference_mode():
            return self._deploy(images)

    def _download_impl(self, outputs):
        return {name: t.cpu() for name, t in zip(OUTPUT_NAMES, outputs)}


class OrtRunner(Runner):
    """An exported ONNX file in ONNX Runtime.

    Args:
        path: the .onnx file.
        providers: execution providers in order of preference; default: TensorRT, CUDA, CPU as far as the
            installed onnxruntime offers them.
        provider_options: one dict per provider, passed through.
        require_metadata: refuse files without maskrt metadata (the Predictor needs it).
        trt_options: run through ONNX Runtime's TensorRT execution provider with these options (see
            :func:`ort_trt_provider_options`); providers default to TensorRT, CUDA, CPU.
    """

    backend = "onnxruntime"
    _PREFERENCE = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")

    def __init__(self, path: str | os.PathLike, providers: Optional[Sequence[str]] = None,
                 provider_options: Optional[Sequence[dict]] = None, require_metadata: bool = True,
                 trt_options: Optional[dict] = None):
        super().__init__(f"onnxruntime:{os.path.basename(os.fspath(path))}")
        self.path = os.fspath(path)
        self.providers = list(providers) if providers else None
        self.provider_options = list(provider_options) if provider_options else None
        if trt_options is not None:
            if provider_options:
                raise MaskrtError("give trt_options or provider_options, not both")
            self.providers = self.providers or list(self._PREFERENCE)
            if "TensorrtExecutionProvider" not in self.providers:
                raise MaskrtError("trt_options need TensorrtExecutionProvider among the providers")
            self.provider_options = [dict(trt_options) if p == "TensorrtExecutionProvider" else {}
                                     for p in self.providers]
        self.session = None
        self.notes: list[str] = []
        self.model_proto = load_onnx(self.path)
        from maskrt.runtime.metadata import ModelMeta

        props = {p.key: p.value for p in self.model_proto.metadata_props}
        self.meta = ModelMeta.from_props(props, source=self.path) if require_metadata else None
        self._inputs = _value_specs(self.model_proto.graph.input, exclude={i.name for i in self.model_proto.graph.initializer})
        self._outputs = _value_specs(self.model_proto.graph.output)

    def input_specs(self):
        return dict(self._inputs)

    def output_specs(self):
        return dict(self._outputs)

    def _activate_impl(self):
        ort = import_onnxruntime()
        available = ort.get_available_providers()
        providers = self.providers or [p for p in self._PREFERENCE if p in available]
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise MaskrtError(f"execution provider(s) {unknown} are not in this onnxruntime; available: {available}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        data = self.model_proto.SerializeToString()
        from maskrt.plugins.ort_bridge import needs_bridge, prepare_session

        if needs_bridge(self.model_proto):
            # A TensorRT-target graph: its plugin nodes run on the CPU as onnxruntime-extensions custom ops.
            data, options = prepare_session(self.model_proto, options)
            self.notes.append("maskrt plugin nodes run on the CPU through onnxruntime-extensions (a check, not for speed)")
        try:
            self.session = ort.InferenceSession(data, options, providers=providers, provider_options=self.provider_options)
        except Exception as e:  # onnxruntime raises its own exception types
            if "RoiAlign(22)" in str(e):
                # onnxruntime has no opset-22 RoiAlign kernel; opset 21 means the same for float inputs.
                from onnx import version_converter

                proto = version_converter.convert_version(self.model_proto, 21)
                proto.ir_version = min(proto.ir_version, 10)
                self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=providers,
                                                    provider_options=self.provider_options)
                self.notes.append("onnxruntime has no opset-22 RoiAlign kernel: ran the graph converted to opset 21")
            else:
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise MaskrtError(f"onnxruntime cannot load {self.path}: {first}") from e
        self.active_providers = self.session.get_providers()
        gpu = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider")
        self.device = "cuda" if self.active_providers and self.active_providers[0] in gpu else "cpu"

    def _deactivate_impl(self):
        self.session = None

    def _upload_impl(self, feeds):
        # onnxruntime takes host arrays and does its own copies (inside ``execute`` for GPU providers).
        import numpy as np
        import torch

        return {k: np.ascontiguousarray(feeds[k].cpu().numpy() if isinstance(feeds[k], torch.Tensor) else feeds[k])
                for k in self._inputs}

    def _execute_impl(self, arrays):
        return self.session.run(None, arrays)

    def _download_impl(self, outs):
        import numpy as np
        import torch

        names = [o.name for o in self.session.get_outputs()]
        return {n: torch.from_numpy(np.ascontiguousarray(o)) for n, o in zip(names, outs)}


#: ONNX Runtime's TensorRT execution provider option names used by :func:`ort_trt_provider_options`.
ORT_TRT_OPTION_NAMES = ("trt_fp16_enable", "trt_engine_cache_enable", "trt_engine_cache_path",
                        "trt_timing_cache_enable", "trt_timing_cache_path", "trt_max_workspace_size")


def ort_trt_provider_options(fp16: bool = False, cache_dir: Optional[str] = None,
                             workspace_bytes: Optional[int] = None) -> dict:
    """Options for onnxruntime's TensorrtExecutionProvider: fp16 kernels, engine and timing caches in
    ``cache_dir`` (created; both caches live there), workspace size. Values are strings, as ONNX Runtime takes them."""
    options = {"trt_fp16_enable": "True" if fp16 else "False"}
    if cache_dir:
        os.makedirs(cache_dir, exist_ok=True)
        options.update({"trt_engine_cache_enable": "True", "trt_engine_cache_path": os.path.abspath(cache_dir),
                        "trt_timing_cache_enable": "True", "trt_timing_cache_path": os.path.abspath(cache_dir)})
    if workspace_bytes:
        options["trt_max_workspace_size"] = str(int(workspace_bytes))
    return options


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as e:
        raise MaskrtError("onnxruntime is not installed: pip install onnxruntime (or maskrt[gpu] for onnxruntime-gpu)") from e
    return onnxruntime


def load_onnx(path: str):
    """Load an .onnx file; MaskrtError for a missing, truncated or corrupt file."""
    try:
        import onnx
    except ImportError as e:
        raise MaskrtError("onnx is not installed: pip install onnx onnxruntime") from e
    if not os.path.isfile(path):
        raise MaskrtError(f"model not found: {path}")
    try:
        proto = onnx.load(path)
        if not proto.graph.node:
            raise ValueError("the graph has no nodes")
        return proto
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise MaskrtError(f"{path} is not a readable ONNX model (corrupt or truncated?): {first}") from e


_ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16", 11: "float64"}


def _value_specs(values, exclude=frozenset()) -> dict[str, TensorSpec]:
    out = {}
    for v in values:
        if v.name in exclude:
            continue
        t = v.type.tensor_type
        shape = tuple(d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim)
        out[v.name] = TensorSpec(_ONNX_DTYPES.get(t.elem_type, str(t.elem_type)), shape)
    return out
