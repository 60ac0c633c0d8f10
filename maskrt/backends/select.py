"""From a model file and options to a runner: the only place that decides which backend runs a model.

:class:`RunnerSpec` names a model (an .onnx export, a TensorRT engine, a checkpoint with a preset, or a preset
with random weights) and how to run it; :meth:`RunnerSpec.check` refuses impossible combinations with one line
before anything is loaded, and :meth:`RunnerSpec.open` makes the runner. ``maskrt predict``, ``profile``,
``bench``, ``eval``, the demo and serving all go through it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Optional

from maskrt.core.errors import MaskrtError
from maskrt.core.onnxfile import model_kind

#: Backends a RunnerSpec can name.
BACKENDS = ("torch", "onnxruntime", "onnxruntime-trt", "tensorrt")
#: Which backends apply to each kind of model file (:func:`maskrt.core.onnxfile.model_kind`); the first is the
#: default ("auto").
APPLICABLE = {"checkpoint": ("torch",), "onnx": ("onnxruntime", "onnxruntime-trt"), "engine": ("tensorrt",)}
#: Named variants of a backend (``maskrt bench --backends``): name -> (backend, precision, CUDA graph).
VARIANTS = {
    "torch": ("torch", "fp32", False),
    "torch-fp16": ("torch", "fp16", False),
    "torch-cudagraph": ("torch", "fp32", True),
    "torch-fp16-cudagraph": ("torch", "fp16", True),
    "onnxruntime": ("onnxruntime", "fp32", False),
    "onnxruntime-trt": ("onnxruntime-trt", "fp32", False),
    "tensorrt": ("tensorrt", "fp32", False),
}


def default_backend(path: Optional[str]) -> str:
    """The backend "auto" means for ``path``: tensorrt for engines, onnxruntime for .onnx, torch otherwise."""
    return APPLICABLE[model_kind(path)][0]


def variants_for(path: Optional[str], device: str = "cpu") -> list[str]:
    """The variants ``maskrt bench`` runs for ``path`` when none are named."""
    kind = model_kind(path)
    if kind != "checkpoint":
        return [APPLICABLE[kind][0]]
    return ["torch", "torch-fp16", "torch-fp16-cudagraph"] if device == "cuda" else ["torch"]


@dataclass
class RunnerSpec:
    """A model file and how to run it.

    ``model_path``: an .onnx export, a TensorRT engine (.engine / .plan / .trt, built by ``maskrt build``), or a
    checkpoint (.pth / .safetensors) with ``arch``; None with ``arch`` and ``random_weights`` for a preset with
    random weights (latency only). ``backend``: "auto" or one of :data:`BACKENDS` ("onnxruntime-trt" is ONNX
    Runtime's TensorRT execution provider, with ``ort_trt_options``; "tensorrt" runs engines, always on CUDA).
    """

    model_path: Optional[str]
    backend: str = "auto"
    device: str = "cpu"
    precision: str = "fp32"
    cuda_graph: bool = False
    arch: Optional[str] = None
    num_classes: Optional[int] = None  # checkpoints: default the preset's (91 for COCO)
    input_size: Optional[tuple] = None  # checkpoints: default the preset's export size (800x1344 for COCO)
    random_weights: bool = False
    label: Optional[str] = None
    model_kwargs: dict = field(default_factory=dict)  # extra preset arguments for torch (e.g. proposal counts)
    ort_trt_options: dict = field(default_factory=dict)  # onnxruntime-trt: see onnxrt.runner.ort_trt_provider_options

    @classmethod
    def variant(cls, name: str, model_path: Optional[str], **kwargs) -> RunnerSpec:
        """The spec of a named variant (:data:`VARIANTS`, e.g. "torch-fp16") for ``model_path``."""
        if name not in VARIANTS:
            raise MaskrtError(f"unknown backend {name!r}; choose from {', '.join(VARIANTS)}")
        backend, precision, graph = VARIANTS[name]
        if backend == "onnxruntime-trt" and not kwargs.get("ort_trt_options"):
            from maskrt.backends.onnxrt.runner import ort_trt_provider_options

            kwargs["ort_trt_options"] = ort_trt_provider_options()
        return cls(model_path, backend=backend, precision=precision, cuda_graph=graph, **kwargs)

    @property
    def kind(self) -> str:
        """"engine", "onnx" or "checkpoint" (a preset with random weights counts as a checkpoint)."""
        return model_kind(self.model_path)

    def resolved_backend(self) -> str:
        return default_backend(self.model_path) if self.backend == "auto" else self.backend

    def name(self) -> str:
        if self.label:
            return self.label
        base = os.path.basename(self.model_path) if self.model_path else f"{self.arch} (random weights)"
        variant = self.resolved_backend()
        if self.precision != "fp32" and self.kind == "checkpoint":
            variant += f" {self.precision}"
        if self.cuda_graph:
            variant += " + CUDA graph"
        return f"{base} [{variant}]"

    def check(self) -> None:
        """Refuse what cannot run (one line naming the fix), before anything is loaded."""
        backend = self.resolved_backend()
        if backend not in BACKENDS:
            raise MaskrtError(f"unknown backend {backend!r}; choose {', '.join(BACKENDS)}")
        if self.device not in ("cpu", "cuda"):
            raise MaskrtError(f"--device must be cpu or cuda, got {self.device!r}")
        if self.model_path and os.path.isdir(self.model_path):
            raise MaskrtError(f"model {self.model_path} is a folder; give an .onnx export, a .engine or a checkpoint")
        if self.model_path and not os.path.isfile(self.model_path):
            raise MaskrtError(f"model not found: {self.model_path}")
        kind = self.kind
        if backend not in APPLICABLE[kind]:
            raise MaskrtError(_mismatch(kind, backend, self.model_path))
        if backend == "tensorrt":
            _require_cuda(backend)
            return
        if backend in ("onnxruntime", "onnxruntime-trt"):
            if self.cuda_graph:
                raise MaskrtError("--cuda-graph applies to the torch backend only (and to TensorRT engines)")
            if backend == "onnxruntime-trt":
                _require_cuda(backend)
                return
        else:
            if not self.arch:
                raise MaskrtError("a checkpoint needs --arch (see `maskrt models`)")
            if not self.model_path and not self.random_weights:
                from maskrt.model.presets import get_preset

                embedded = get_preset(self.arch).weights_path()
                if embedded is None:
                    raise MaskrtError(f"{self.arch} ships no weights: give a checkpoint, or --random-weights to time "
                                      "the preset with random weights")
                self.model_path = embedded  # the preset's embedded weights
        if self.device == "cuda":
            _require_cuda(backend)
        if self.cuda_graph and self.device != "cuda":
            raise MaskrtError("--cuda-graph needs --device cuda")

    def fixed_batch(self) -> Optional[int]:
        """The batch a fixed-batch export or engine takes; None when the model takes any batch (checkpoints,
        dynamic-batch files)."""
        kind = self.kind
        if kind == "onnx" and self.model_path and os.path.isfile(self.model_path):
            from maskrt.core.onnxfile import graph_io, load_onnx

            images = graph_io(load_onnx(self.model_path))[0].get("images")
            return images.shape[0] if images is not None and images.shape else None
        if kind == "engine" and self.model_path and os.path.isfile(self.model_path):
            from maskrt.backends.trt.sidecar import read_sidecar, sidecar_specs

            sidecar = read_sidecar(self.model_path)
            if sidecar is None:
                return None
            images = sidecar_specs(sidecar["inputs"]).get("images")
            return images[1][0] if images is not None else None
        return None

    def model_info(self) -> dict:
        """What reports say about the model: name, path, size and sha256 of the file."""
        from maskrt.core.environment import file_sha256

        info = {"name": os.path.basename(self.model_path) if self.model_path else self.arch,
                "path": os.path.abspath(self.model_path) if self.model_path else None, "arch": self.arch,
                "random_weights": self.random_weights}
        if self.model_path and os.path.isfile(self.model_path):
            info["size_bytes"] = os.path.getsize(self.model_path)
            info["sha256"] = file_sha256(self.model_path)
        return info

    def open(self, batch: Optional[int] = None):
        """A runner (not yet active) for ``batch`` images per call (None: the model's own batch)."""
        self.check()
        backend = self.resolved_backend()
        if backend == "tensorrt":
            return _open_engine(self.model_path, batch, self.cuda_graph)
        if backend in ("onnxruntime", "onnxruntime-trt"):
            from maskrt.backends.onnxrt.runner import OrtRunner

            if backend == "onnxruntime-trt":
                runner = OrtRunner(self.model_path, trt_options=self.ort_trt_options or {})
            else:
                providers = (["CUDAExecutionProvider", "CPUExecutionProvider"] if self.device == "cuda"
                             else ["CPUExecutionProvider"])
                runner = OrtRunner(self.model_path, providers=providers)
            fixed = runner.batch
            if batch is not None and fixed is not None and batch != fixed:
                raise MaskrtError(f"{os.path.basename(self.model_path)} takes batch {fixed} only (fixed-batch export); "
                                  f"re-export with --dynamic-batch (or --batch {batch}) to run batch {batch}")
            return runner
        return self._open_torch(batch)

    def _open_torch(self, batch: Optional[int]):
        import torch

        from maskrt.backends.torch.runner import TorchRunner
        from maskrt.model import build, load_checkpoint
        from maskrt.model.presets import resolve_sizes

        sizes = resolve_sizes(self.arch, self.input_size)
        h, w = sizes.pop("input_size")
        torch.manual_seed(0)
        model = build(self.arch, num_classes=self.num_classes, **{**sizes, **self.model_kwargs})
        if self.model_path:
            load_checkpoint(self.model_path, model)
        return TorchRunner(model.eval(), (h, w), batch or 1, device=self.device, precision=self.precision,
                           cuda_graph=self.cuda_graph)


def _mismatch(kind: str, backend: str, path: Optional[str]) -> str:
    name = os.path.basename(path) if path else "the preset"
    if kind == "engine":
        return f"{name} is a TensorRT engine: use --backend tensorrt (or auto)"
    if kind == "onnx":
        if backend == "torch":
            return "the torch backend needs a checkpoint with --arch, not an .onnx file"
        return f"the {backend} backend needs an engine (.engine): build one with `maskrt build {name} -o MODEL.engine`"
    if backend == "tensorrt":
        return "the tensorrt backend needs an engine (.engine); build one from the .onnx export with `maskrt build`"
    return f"the {backend} backend needs an .onnx file; export the checkpoint with `maskrt export`"


def _open_engine(path: str, batch: Optional[int], cuda_graph: bool):
    from maskrt.backends.trt.runner import TrtRunner

    runner = TrtRunner(path, cuda_graph=cuda_graph)
    spec = runner.input_specs().get("images")
    fixed = spec.shape[0] if spec is not None else None
    name = os.path.basename(path)
    if batch is not None and fixed is not None and batch != fixed:
        raise MaskrtError(f"{name} takes batch {fixed} only; rebuild it from a --dynamic-batch export to run batch {batch}")
    if batch is not None and fixed is None:
        entry = next((e for e in runner.sidecar["inputs"] if e["name"] == "images"), {})
        lo, hi = (entry.get("min") or [1])[0], (entry.get("max") or [batch])[0]
        if not lo <= batch <= hi:
            raise MaskrtError(f"{name} takes batch {lo} to {hi} (its optimization profile); rebuild it with "
                              f"`maskrt build --min-batch/--max-batch` to run batch {batch}")
    return runner


def _require_cuda(backend: str) -> None:
    if backend == "tensorrt":
        from maskrt.backends.trt.api import import_tensorrt

        import_tensorrt()
        _torch_cuda("TensorRT engines run on an NVIDIA GPU: torch sees no CUDA device")
        return
    if backend == "torch":
        _torch_cuda("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
        return
    from maskrt.backends.onnxrt.runner import import_onnxruntime

    available = import_onnxruntime().get_available_providers()
    if backend == "onnxruntime-trt":
        if "TensorrtExecutionProvider" not in available:
            raise MaskrtError(f"the onnxruntime-trt backend needs onnxruntime's TensorRT provider (pip install "
                              f"onnxruntime-gpu tensorrt); this onnxruntime offers {available}")
    elif "CUDAExecutionProvider" not in available:
        raise MaskrtError(f"--device cuda needs onnxruntime's CUDA provider (pip install onnxruntime-gpu); this "
                          f"onnxruntime offers {available}")


def _torch_cuda(message: str) -> None:
    import torch

    if not torch.cuda.is_available():
        raise MaskrtError(message)


def common_batch(specs) -> int:
    """The batch that every spec can run: the fixed batch of the fixed-batch models (they must agree), else 1."""
    fixed = {}
    for spec in specs:
        b = spec.fixed_batch()
        if b is not None:
            fixed.setdefault(b, spec.model_path)
    if len(fixed) > 1:
        listing = ", ".join(f"{os.path.basename(p)} takes {b}" for b, p in fixed.items())
        raise MaskrtError(f"the models take different fixed batches ({listing}); pass --batch, or re-export with "
                          "--dynamic-batch")
    return next(iter(fixed), 1)
