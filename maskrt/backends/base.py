"""The runner contract that every backend implements (torch, ONNX Runtime, TensorRT).

A runner takes the deploy contract's fixed tensors in and gives them out: ``images`` uint8 (B, 3, H, W) at the
model's input size -> ``num_detections`` int32 (B,), ``boxes`` float32 (B, K, 4), ``scores`` (B, K), ``labels``
int32 (B, K), ``masks`` float32 (B, K, M, M). Pre- and post-processing live in :mod:`maskrt.inference`, once.

The public methods check state and call the ``_..._impl`` a backend writes (as Polygraphy's runners do):
``activate``/``deactivate`` (or ``with runner:``), ``infer`` = ``download(execute(upload(feeds)))``; the three
steps are public so that profiling can time the model alone and each copy separately. What a runner can do
beyond the contract is declared in :attr:`Runner.capabilities`; callers ask it, never the backend's name.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Mapping, Optional

from maskrt.core.errors import MaskrtError
from maskrt.core.metadata import ModelMeta
from maskrt.core.onnxfile import TensorSpec

OUTPUT_NAMES = ("num_detections", "boxes", "scores", "labels", "masks")

__all__ = ["OUTPUT_NAMES", "Capabilities", "Runner", "TensorSpec", "contract_output_specs"]


@dataclass(frozen=True)
class Capabilities:
    """What a runner offers beyond the contract.

    device_timing: ``execute`` enqueues work on :attr:`Runner.cuda_stream`, so CUDA events time the device alone.
    allocator_stats: its GPU memory is allocated through torch's caching allocator (peak memory is measurable).
    layer_profile: :meth:`Runner.profile_layers` gives per-layer times.
    cuda_graph: replays its work from CUDA graphs (as asked when it was made).
    """

    device_timing: bool = False
    allocator_stats: bool = False
    layer_profile: bool = False
    cuda_graph: bool = False


class Runner(abc.ABC):
    """Base of the backends' runners (see the module docstring).

    Attributes: ``name`` (for reports), ``meta`` (:class:`ModelMeta`, None for a model without maskrt metadata),
    ``device`` ("cpu", "cuda", "cuda:N"), ``backend`` (a label for reports), ``notes`` (remarks for reports).
    """

    backend = "base"
    capabilities = Capabilities()

    def __init__(self, name: str):
        self.name = name
        self.is_active = False
        self.meta: Optional[ModelMeta] = None
        self.device = "cpu"
        self.notes: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------------------------------
    def activate(self) -> Runner:
        if not self.is_active:
            self._activate_impl()
            self.is_active = True
        return self

    def deactivate(self) -> None:
        if self.is_active:
            self._deactivate_impl()
            self.is_active = False

    def __enter__(self) -> Runner:
        return self.activate()

    def __exit__(self, *exc) -> None:
        self.deactivate()

    # -- description -----------------------------------------------------------------------------------------------
    @abc.abstractmethod
    def input_specs(self) -> dict[str, TensorSpec]:
        """Graph inputs: name -> dtype and shape (None for a dynamic dimension)."""

    @abc.abstractmethod
    def output_specs(self) -> dict[str, TensorSpec]:
        """Graph outputs: name -> dtype and shape."""

    @property
    def batch(self) -> Optional[int]:
        """The fixed batch size, or None when the model takes any batch."""
        return self.input_specs()["images"].shape[0]

    @property
    def providers(self) -> list[str]:
        """The execution providers in use, best first (ONNX Runtime); empty for other backends."""
        return []

    @property
    def cuda_stream(self):
        """The torch CUDA stream ``execute`` enqueues on (with ``capabilities.device_timing``), else None."""
        return None

    # -- running -----------------------------------------------------------------------------------------------------
    def infer(self, feeds: Mapping[str, object]) -> dict:
        """Run one batch. ``feeds["images"]``: uint8 (B, 3, H, W) torch tensor or numpy array.

        Returns the outputs as CPU torch tensors, keyed by name.
        """
        return self.download(self.execute(self.upload(feeds)))

    def upload(self, feeds: Mapping[str, object]) -> object:
        """Host-to-device step: checked feeds -> what ``execute`` takes (device tensors, numpy arrays...)."""
        self._require_active()
        feeds = self._with_image_sizes(feeds)
        self._check_feeds(feeds)
        return self._upload_impl(feeds)

    def execute(self, device_feeds) -> object:
        """The model alone, on uploaded feeds; returns backend outputs (possibly still on the device)."""
        self._require_active()
        return self._execute_impl(device_feeds)

    def download(self, outputs) -> dict:
        """Device-to-host step: backend outputs -> CPU torch tensors keyed by name."""
        return self._download_impl(outputs)

    def device_outputs(self, outputs) -> dict:
        """Backend outputs -> torch tensors keyed by name, on the runner's device (no host copy for a runner on
        CUDA), safe to keep after the next ``execute``. Post-processing runs there."""
        return self.download(outputs)

    def synchronize(self) -> None:
        """Wait for the device to finish queued work (a no-op for host backends)."""

    def profile_layers(self, device_feeds, iterations: int = 20) -> list[dict]:
        """Per-layer times over ``iterations`` runs (only with ``capabilities.layer_profile``)."""
        raise MaskrtError(f"the {self.backend} backend has no per-layer profile (TensorRT engines do)")

    # -- for subclasses ----------------------------------------------------------------------------------------------
    def _upload_impl(self, feeds):
        return feeds

    @abc.abstractmethod
    def _execute_impl(self, device_feeds):
        """Run the model on what ``_upload_impl`` returned."""

    def _download_impl(self, outputs):
        return outputs

    def _activate_impl(self) -> None:
        pass

    def _deactivate_impl(self) -> None:
        pass

    def _require_active(self) -> None:
        if not self.is_active:
            raise MaskrtError(f"{type(self).__name__} is not active: use it as a context manager or call activate()")

    def _with_image_sizes(self, feeds: Mapping[str, object]) -> Mapping[str, object]:
        """``feeds`` with ``image_sizes`` added when the model takes it and the caller gave images only: every
        image then fills its canvas."""
        if "image_sizes" in feeds or "images" not in feeds or "image_sizes" not in self.input_specs():
            return feeds
        import torch

        images = feeds["images"]
        b, h, w = (int(v) for v in (images.shape[0], images.shape[-2], images.shape[-1]))
        return {**feeds, "image_sizes": torch.tensor([[h, w]] * b, dtype=torch.int32)}

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
                raise MaskrtError(f"input {name!r} must have shape {spec.shape_text()}, got "
                                  f"{'x'.join(map(str, shape))}")
        meta = self.meta
        if meta is not None and meta.dynamic_size and "images" in feeds:
            h, w = (int(v) for v in feeds["images"].shape[-2:])
            d = meta.size_divisible
            lo = meta.min_input_size or (d, d)
            hi = meta.max_input_size or meta.input_size
            if h % d or w % d or not (lo[0] <= h <= hi[0] and lo[1] <= w <= hi[1]):
                raise MaskrtError(f"images of {h}x{w}: this dynamic-size model takes heights {lo[0]}..{hi[0]} and "
                                  f"widths {lo[1]}..{hi[1]}, multiples of {d} (the Predictor pads and resizes to "
                                  "fit)")


def contract_output_specs(batch: Optional[int], k: int, m: int) -> dict[str, TensorSpec]:
    """The deploy contract's outputs for ``batch`` images, ``k`` detections and ``m`` x ``m`` masks."""
    return {
        "num_detections": TensorSpec("int32", (batch,)),
        "boxes": TensorSpec("float32", (batch, k, 4)),
        "scores": TensorSpec("float32", (batch, k)),
        "labels": TensorSpec("int32", (batch, k)),
        "masks": TensorSpec("float32", (batch, k, m, m)),
    }
