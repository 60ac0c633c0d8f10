"""Export the deploy forward to ONNX: portable ops (RoiAlign, NonMaxSuppression), fp32 or fp16.

The graph takes ``images`` uint8 (B, 3, H, W) at the export size and returns the deploy contract's
``num_detections``, ``boxes``, ``scores``, ``labels`` and ``masks``. Its ``metadata_props`` carry what a runtime
needs to use the file alone (see :data:`METADATA_KEYS`).
"""

from __future__ import annotations

import contextlib
import io
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

from maskrt import __version__
from maskrt.core.errors import MaskrtError
from maskrt.core.fileio import atomic_output, check_output_file
from maskrt.core.parsing import parse_size
from maskrt.model.meta import model_meta

MIN_OPSET = 16
MAX_OPSET = 22
DEFAULT_OPSET = 17
DEFAULT_INPUT_SIZE = (800, 1344)
# Highest opset the TorchScript-based exporter writes itself; newer ones are reached with ONNX's converter.
_EXPORTER_MAX_OPSET = 20
_TWO_GB = 2**31

@dataclass
class ExportResult:
    """What :func:`to_onnx` wrote."""

    path: str
    size_bytes: int
    opset: int
    precision: str
    input_size: tuple[int, int]
    batch: int
    dynamic_batch: bool
    seconds: float
    op_types: list[str] = field(default_factory=list)
    metadata: dict[str, str] = field(default_factory=dict)


def ir_version_for(opset: int) -> int:
    """The lowest ONNX IR version that carries ``opset`` (onnxruntime refuses IR versions newer than it knows)."""
    import onnx.helper

    candidates = [row[1] for row in onnx.helper.VERSION_TABLE if row[2] is not None and row[2] >= opset]
    return min(candidates) if candidates else onnx.IR_VERSION


def _check_options(opset: int, precision: str, batch: int) -> None:
    if not isinstance(opset, int) or opset < MIN_OPSET:
        raise MaskrtError(
            f"opset {opset} is too old: RoiAlign's coordinate_transformation_mode (needed to express torchvision's "
            f"aligned=False exactly) exists from opset {MIN_OPSET}; use --opset {MIN_OPSET} to {MAX_OPSET}"
        )
    if opset > MAX_OPSET:
        raise MaskrtError(f"opset {opset} is not supported; use {MIN_OPSET} to {MAX_OPSET}")
    if precision not in ("fp32", "fp16"):
        raise MaskrtError(f"precision must be fp32 or fp16, got {precision!r}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise MaskrtError(f"batch must be a positive integer, got {batch!r}")


@contextlib.contextmanager
def detection_settings(model, max_detections: Optional[int], score_threshold: Optional[float]):
    """Within the block, the model keeps ``max_detections`` per image above ``score_threshold`` (None: its own)."""
    heads = model.roi_heads
    saved = (heads.detections_per_img, heads.score_thresh)
    try:
        if max_detections is not None:
            if max_detections < 1:
                raise MaskrtError(f"--max-detections must be >= 1, got {max_detections}")
            heads.detections_per_img = int(max_detections)
        if score_threshold is not None:
            if not 0.0 <= score_threshold < 1.0:
                raise MaskrtError(f"--score-threshold must be in [0, 1), got {score_threshold}")
            heads.score_thresh = float(score_threshold)
        yield
    finally:
        heads.detections_per_img, heads.score_thresh = saved


def export_model_proto(model, *, input_size=DEFAULT_INPUT_SIZE, batch: int = 1, dynamic_batch: bool = False,
                       opset: int = DEFAULT_OPSET, precision: str = "fp32", max_detections: Optional[int] = None,
                       score_threshold: Optional[float] = None, class_names=None, target: str = "portable",
                       dynamic_size: bool = False):
    """Trace ``model``'s deploy forward and return the finished ``onnx.ModelProto`` (not yet written).

    ``target="tensorrt"`` writes each RoI pooling stage as one maskrt TensorRT plugin node
    (:mod:`maskrt.export.tensorrt_target`) instead of standard ONNX ops. ``dynamic_size``: height and width are
    symbolic (any multiple of ``size_divisible`` within :func:`maskrt.model.meta.size_bounds`).
    """
    import onnx
    import torch

    from maskrt.data.images import synthetic_image
    from maskrt.export import symbolic
    from maskrt.export.fp16 import convert_to_fp16, inline_initializer_identities
    from maskrt.export.tensorrt_target import check_target
    from maskrt.model import DeployMaskRCNN
    from maskrt.model.memory import check_forward_memory

    _check_options(opset, precision, batch)
    check_target(target)
    h, w = parse_size(input_size)
    d = int(model.size_divisible)
    if dynamic_size and (h % d or w % d):
        raise MaskrtError(f"--dynamic-size needs an export size that is a multiple of {d} (it is the size the graph is "
                          f"traced and tuned at), got {h}x{w}")
    with detection_settings(model, max_detections, score_threshold):
        meta = model_meta(model, (h, w), None if dynamic_batch else batch, precision, opset, class_names, target,
                          dynamic_size=dynamic_size)
        deploy = DeployMaskRCNN(model, dynamic_size=dynamic_size).eval()
        check_forward_memory(deploy, batch, (h, w))  # the trace runs the forward once at this size
        example = torch.stack([synthetic_image(h, w, seed=i) for i in range(batch)])
        # Traced with every image filling its canvas; the sizes are an input, so nothing depends on them.
        example_sizes = torch.tensor([[h, w]] * batch, dtype=torch.int32)
        trace_opset = min(opset, _EXPORTER_MAX_OPSET)
        symbolic.register(trace_opset)
        names = list(DeployMaskRCNN.output_names)
        axes = {}
        if dynamic_batch:
            axes = {"images": {0: "batch"}, "image_sizes": {0: "batch"}, **{n: {0: "batch"} for n in names}}
        if dynamic_size:
            axes.setdefault("images", {}).update({2: "height", 3: "width"})
        dynamic_axes = axes or None
        buffer = io.BytesIO()
        was_training = model.training
        model.eval()
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), symbolic.export_target(target):
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    deploy, (example, example_sizes), buffer, dynamo=False, opset_version=trace_opset,
                    input_names=list(DeployMaskRCNN.input_names), output_names=names, dynamic_axes=dynamic_axes,
                    do_constant_folding=True,
                )
        finally:
            model.train(was_training)
    proto = onnx.load_from_string(buffer.getvalue())
    inline_initializer_identities(proto)
    if opset > trace_opset:
        from onnx import version_converter

        proto = version_converter.convert_version(proto, opset)
    if precision == "fp16":
        proto = convert_to_fp16(proto)
    proto.ir_version = ir_version_for(opset)
    proto.producer_name = "maskrt"
    proto.producer_version = __version__
    del proto.metadata_props[:]
    for k, v in meta.to_props().items():
        proto.metadata_props.add(key=k, value=v)
    proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
    return proto


def write_onnx_atomic(proto, path: str | os.PathLike, before_commit: Optional[Callable[[str], None]] = None) -> int:
    """Check ``proto`` and write it to ``path`` atomically (:func:`maskrt.core.fileio.atomic_output`); returns the
    file size. Models over 2 GB are written with their weights in ``<name>.data`` next to the file.

    ``before_commit(tmp_path)`` runs on the complete temporary file before it replaces ``path``; if it raises,
    nothing is written (an existing ``path`` stays as it was) and the exception goes on.
    """
    import onnx

    path = os.fspath(path)
    large = proto.ByteSize() >= _TWO_GB
    if not large:
        onnx.checker.check_model(proto, full_check=True)
    with atomic_output(path) as tmp:
        if large:
            data_name = os.path.basename(path) + ".data"
            onnx.save_model(proto, tmp, save_as_external_data=True, all_tensors_to_one_file=True, location=data_name)
            onnx.checker.check_model(tmp, full_check=True)
        else:
            with open(tmp, "wb") as f:
                f.write(proto.SerializeToString())
        if before_commit is not None:
            before_commit(tmp)
    return os.path.getsize(path)


def to_onnx(model, path: str | os.PathLike, *, input_size=DEFAULT_INPUT_SIZE, batch: int = 1, dynamic_batch: bool = False,
            opset: int = DEFAULT_OPSET, precision: str = "fp32", max_detections: Optional[int] = None,
            score_threshold: Optional[float] = None, class_names=None, target: str = "portable",
            dynamic_size: bool = False, before_commit: Optional[Callable[[str], None]] = None) -> ExportResult:
    """Export ``model`` (a :class:`maskrt.model.MaskRCNN`) to a portable ONNX file.

    Args:
        model: the eager model; its deploy forward is exported.
        path: output .onnx path, written atomically.
        input_size: (H, W) or "HxW" of the uint8 input; default 800x1344.
        batch: fixed batch size (the traced one when ``dynamic_batch``).
        dynamic_batch: make the batch dimension symbolic ("batch").
        opset: 16 to 22.
        precision: "fp32", or "fp16" (network in fp16, sensitive parts in fp32 through explicit casts).
        max_detections, score_threshold: override the model's ``box_detections_per_img`` / ``box_score_thresh``.
        class_names: names for every class, background first (defaults to COCO's for 91 classes).
        target: "portable" (standard ONNX ops only) or "tensorrt" (RoI pooling as maskrt TensorRT plugin nodes,
            see :mod:`maskrt.export.tensorrt_target`; metadata "target" says which).
        dynamic_size: height and width symbolic (multiples of ``size_divisible`` up to the resize rule's largest
            side); the graph is traced at ``input_size``.
        before_commit: called with the complete temporary file before it replaces ``path`` (e.g. verification);
            if it raises, nothing is written.
    """
    start = time.perf_counter()
    check_output_file(path, "output")  # before the trace: a missing or read-only folder is said at once
    proto = export_model_proto(model, input_size=input_size, batch=batch, dynamic_batch=dynamic_batch, opset=opset,
                               precision=precision, max_detections=max_detections, score_threshold=score_threshold,
                               class_names=class_names, target=target, dynamic_size=dynamic_size)
    size = write_onnx_atomic(proto, path, before_commit)
    return ExportResult(
        path=os.fspath(path), size_bytes=size, opset=opset, precision=precision, input_size=parse_size(input_size),
        batch=batch, dynamic_batch=dynamic_batch, seconds=time.perf_counter() - start,
        op_types=sorted({n.op_type for n in proto.graph.node}), metadata={p.key: p.value for p in proto.metadata_props},
    )
