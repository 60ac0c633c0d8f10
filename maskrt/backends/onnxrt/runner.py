"""``OrtRunner``: an exported ONNX file in ONNX Runtime, under the runner contract."""

from __future__ import annotations

import os
from typing import Optional, Sequence

from maskrt.backends.base import Runner
from maskrt.core.errors import MaskrtError, one_line
from maskrt.core.metadata import ModelMeta
from maskrt.core.onnxfile import graph_io, load_onnx, metadata_props

#: Providers that run on a GPU (the runner's ``device`` is "cuda" when the first active one is among them).
GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "ROCMExecutionProvider", "DmlExecutionProvider")


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
        self.requested_providers = list(providers) if providers else None
        self.provider_options = list(provider_options) if provider_options else None
        if trt_options is not None:
            if provider_options:
                raise MaskrtError("give trt_options or provider_options, not both")
            self.requested_providers = self.requested_providers or list(self._PREFERENCE)
            if "TensorrtExecutionProvider" not in self.requested_providers:
                raise MaskrtError("trt_options need TensorrtExecutionProvider among the providers")
            self.provider_options = [dict(trt_options) if p == "TensorrtExecutionProvider" else {}
                                     for p in self.requested_providers]
        self.session = None
        self.active_providers: list[str] = []
        self.model_proto = load_onnx(self.path)
        self.meta = ModelMeta.from_props(metadata_props(self.model_proto), source=self.path) if require_metadata else None
        self._inputs, self._outputs = graph_io(self.model_proto)

    def input_specs(self):
        return dict(self._inputs)

    def output_specs(self):
        return dict(self._outputs)

    @property
    def providers(self) -> list[str]:
        return list(self.active_providers)

    def _activate_impl(self):
        from maskrt.backends.onnxrt.bridge import needs_bridge, prepare_session

        ort = import_onnxruntime()
        available = ort.get_available_providers()
        providers = self.requested_providers or [p for p in self._PREFERENCE if p in available]
        unknown = [p for p in providers if p not in available]
        if unknown:
            raise MaskrtError(f"execution provider(s) {unknown} are not in this onnxruntime; available: {available}")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        data = self.model_proto.SerializeToString()
        if needs_bridge(self.model_proto):
            # A TensorRT-target graph: its plugin nodes run on the CPU as onnxruntime-extensions custom ops.
            data, options = prepare_session(self.model_proto, options)
            self.notes.append("maskrt plugin nodes run on the CPU through onnxruntime-extensions (a check, not for speed)")
        try:
            self.session = ort.InferenceSession(data, options, providers=providers, provider_options=self.provider_options)
        except Exception as e:  # onnxruntime raises its own exception types
            if "RoiAlign(22)" not in str(e):
                raise MaskrtError(f"onnxruntime cannot load {self.path}: {one_line(e)}") from e
            # onnxruntime has no opset-22 RoiAlign kernel; opset 21 means the same for float inputs.
            from onnx import version_converter

            proto = version_converter.convert_version(self.model_proto, 21)
            proto.ir_version = min(proto.ir_version, 10)
            self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=providers,
                                                provider_options=self.provider_options)
            self.notes.append("onnxruntime has no opset-22 RoiAlign kernel: ran the graph converted to opset 21")
        self.active_providers = self.session.get_providers()
        self.device = "cuda" if self.active_providers and self.active_providers[0] in GPU_PROVIDERS else "cpu"

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
