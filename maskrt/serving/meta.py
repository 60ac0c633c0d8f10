"""The maskrt metadata of a model file, read without running it where the file carries it."""

from __future__ import annotations

from maskrt.core.errors import MaskrtError
from maskrt.core.metadata import ModelMeta


def model_meta(spec) -> ModelMeta:
    """The :class:`ModelMeta` of a :class:`~maskrt.backends.select.RunnerSpec`'s model: an export's
    metadata_props, an engine's sidecar, or for a checkpoint the model built on the CPU (no weights are run)."""
    import os

    kind = spec.kind
    if kind == "engine":  # only read here: an engine's backend needs CUDA to run, not to be described
        if not os.path.isfile(spec.model_path):
            raise MaskrtError(f"model not found: {spec.model_path}")
    else:
        spec.check()
    if kind == "onnx":
        from maskrt.core.onnxfile import load_onnx, metadata_props

        return ModelMeta.from_props(metadata_props(load_onnx(spec.model_path)), spec.model_path)
    if kind == "engine":
        from maskrt.backends.trt.sidecar import read_sidecar

        sidecar = read_sidecar(spec.model_path)
        if sidecar is None:
            raise MaskrtError(f"{spec.model_path} has no sidecar ({spec.model_path}.json); rebuild it with `maskrt build`")
        return ModelMeta.from_props(sidecar["onnx"]["metadata"], spec.model_path)
    return spec.open(None).meta
