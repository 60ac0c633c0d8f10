"""INT8 against fp32 on a dataset: the AP gate of ``maskrt export --precision int8`` and the per-part sensitivity.

Both run ONNX Runtime on the CPU (QDQ kernels) over a COCO dataset through the Predictor, exactly as
``maskrt eval`` does, and compare bbox/segm AP with the fp32 export's, in AP points (0-100).
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import asdict, dataclass
from typing import Callable, Optional, Sequence

from maskrt.core.errors import MaskrtError


@dataclass
class ApRow:
    """One model's AP (points, 0-100) and its drop against the fp32 reference (positive: worse)."""

    name: str
    bbox: Optional[float]
    segm: Optional[float]
    bbox_drop: float = 0.0
    segm_drop: float = 0.0
    seconds: float = 0.0

    @property
    def worst_drop(self) -> float:
        return max(self.bbox_drop, self.segm_drop)

    def to_dict(self) -> dict:
        return {k: (round(v, 3) if isinstance(v, float) else v) for k, v in asdict(self).items()}


class ApGateFailed(MaskrtError):
    """The INT8 graph lost more AP than allowed; ``lines`` holds the table."""

    def __init__(self, message: str, lines: list[str]):
        super().__init__(message)
        self.lines = list(lines)


def _points(metrics: dict, kind: str) -> Optional[float]:
    m = metrics.get(kind)
    return None if m is None else 100.0 * float(m["AP"])


def evaluate_onnx(path: str, dataset, name: str = "") -> ApRow:
    """bbox/segm AP of an ONNX file on ``dataset`` (ONNX Runtime, CPU)."""
    from maskrt.backends.onnxrt.runner import OrtRunner
    from maskrt.evaluation.coco import evaluate

    start = time.perf_counter()
    result = evaluate(OrtRunner(path, providers=["CPUExecutionProvider"]), dataset)
    return ApRow(name or os.path.basename(path), _points(result.metrics, "bbox"), _points(result.metrics, "segm"),
                 seconds=time.perf_counter() - start)


def with_drops(reference: ApRow, row: ApRow) -> ApRow:
    """``row`` with its AP drops against ``reference`` filled in."""
    for kind in ("bbox", "segm"):
        ref, val = getattr(reference, kind), getattr(row, kind)
        setattr(row, f"{kind}_drop", 0.0 if ref is None or val is None else round(ref - val, 3) + 0.0)
    return row


def table_lines(rows: Sequence[ApRow], max_drop: Optional[float] = None) -> list[str]:
    """A plain table: model, bbox AP, segm AP, drops (and pass/fail against ``max_drop``)."""
    def ap(v):
        return "-" if v is None else f"{v:.2f}"

    head = f"{'model':<34} {'bbox AP':>8} {'segm AP':>8} {'bbox drop':>10} {'segm drop':>10}"
    if max_drop is not None:
        head += "  gate"
    lines = [head]
    for i, r in enumerate(rows):
        line = (f"{r.name[:34]:<34} {ap(r.bbox):>8} {ap(r.segm):>8} "
                f"{'' if i == 0 else f'{r.bbox_drop:+.2f}':>10} {'' if i == 0 else f'{r.segm_drop:+.2f}':>10}")
        if max_drop is not None and i > 0:
            line += "  " + ("ok" if r.worst_drop <= max_drop else f"FAIL (> {max_drop:g})")
        lines.append(line.rstrip())
    return lines


def ap_gate(fp32_proto, int8_proto, dataset, max_drop: float, echo: Callable[[str], None] = print,
            label: str = "int8") -> list[ApRow]:
    """Evaluate both graphs on ``dataset`` and show the table; :class:`ApGateFailed` when INT8 loses more than
    ``max_drop`` AP points on bbox or segm. Returns [fp32 row, int8 row]."""
    import onnx

    if max_drop is None or max_drop < 0:
        raise MaskrtError(f"--max-ap-drop must be >= 0 AP points, got {max_drop}")
    with tempfile.TemporaryDirectory(prefix="maskrt-gate-") as tmp:
        paths = {}
        for key, proto in (("fp32", fp32_proto), (label, int8_proto)):
            paths[key] = os.path.join(tmp, f"{key}.onnx")
            onnx.save_model(proto, paths[key])
        echo(f"AP gate: evaluating fp32 and {label} on {dataset.num_images} images ...")
        ref = evaluate_onnx(paths["fp32"], dataset, "fp32")
        row = with_drops(ref, evaluate_onnx(paths[label], dataset, label))
    lines = table_lines([ref, row], max_drop)
    for line in lines:
        echo("  " + line)
    if row.worst_drop > max_drop:
        kind = "bbox" if row.bbox_drop >= row.segm_drop else "segm"
        raise ApGateFailed(f"INT8 loses {row.worst_drop:.2f} {kind} AP points against fp32 (allowed "
                           f"{max_drop:g}): nothing written; keep sensitive parts in float (--keep-float), try "
                           "another --calibration-method or more calibration images", lines)
    return [ref, row]


def sensitivity(fp32_proto, feeds: list, dataset, method: str = "minmax", parts: Optional[Sequence[str]] = None,
                log: Callable[[str], None] = lambda line: None, work_dir: Optional[str] = None) -> list[ApRow]:
    """Quantize one part at a time (the others in float) and measure AP: [fp32, all parts, each part ...].

    One calibration (ranges for every quantizable tensor) serves every row. A part whose row drops most is the
    first to keep in float.
    """
    import onnx

    from maskrt.export.int8 import PARTS, Int8Recipe, quantize_proto

    parts = tuple(parts or PARTS)
    rows = []
    with tempfile.TemporaryDirectory(prefix="maskrt-sens-", dir=work_dir) as tmp:
        cache = os.path.join(tmp, f"calibration-{method}.json")
        fp32_path = os.path.join(tmp, "fp32.onnx")
        onnx.save_model(fp32_proto, fp32_path)
        log(f"evaluating fp32 on {dataset.num_images} images ...")
        ref = evaluate_onnx(fp32_path, dataset, "fp32")
        rows.append(ref)
        choices = [("all parts", ())] + [(f"only {p}", tuple(q for q in PARTS if q != p)) for p in parts]
        for name, keep in choices:
            recipe = Int8Recipe(method=method, keep_float=keep)
            proto = quantize_proto(fp32_proto, feeds, recipe, work_dir=tmp, cache=cache)
            path = os.path.join(tmp, "int8.onnx")
            onnx.save_model(proto, path)
            log(f"evaluating int8 {method}, {name} ...")
            rows.append(with_drops(ref, evaluate_onnx(path, dataset, f"int8 {method}, {name}")))
    return rows


@dataclass
class Int8Export:
    """What :func:`export_int8` wrote."""

    path: str
    size_bytes: int
    seconds: float
    calibration_images: int
    qdq: dict
    gate: list  # [fp32 row, int8 row] when a dataset was given


def export_int8(fp32_proto, output: str, calibration: Sequence[str], recipe=None, *, dataset=None,
                max_drop: float = 1.0, before_commit: Optional[Callable[[str], None]] = None,
                echo: Callable[[str], None] = print) -> Int8Export:
    """Quantize ``fp32_proto`` (an fp32 maskrt export) with ``calibration`` images (paths, see
    :func:`maskrt.export.int8.calibration_images`) and write it to ``output`` atomically.

    With ``dataset`` (a :class:`~maskrt.evaluation.coco.CocoDataset`) both graphs are evaluated first and the
    file is written only when INT8 loses at most ``max_drop`` AP points on bbox and segm (:func:`ap_gate`);
    ``before_commit`` (e.g. verification against PyTorch) runs on the complete temporary file.
    """
    from maskrt.core.metadata import ModelMeta
    from maskrt.export.int8 import Int8Recipe, check_fp32_input, qdq_counts, quantize_proto
    from maskrt.export.onnx_export import write_onnx_atomic
    from maskrt.inference.predictor import model_feeds

    recipe = recipe or Int8Recipe()
    recipe.check()
    check_fp32_input(fp32_proto)
    if dataset is not None and (max_drop is None or max_drop < 0):
        raise MaskrtError(f"--max-ap-drop must be >= 0 AP points, got {max_drop}")
    start = time.perf_counter()
    meta = ModelMeta.from_props({p.key: p.value for p in fp32_proto.metadata_props})
    echo(f"calibrating on {len(calibration)} image(s) ({recipe.name}) ...")
    feeds = model_feeds(list(calibration), meta)
    int8 = quantize_proto(fp32_proto, feeds, recipe)
    gate = ap_gate(fp32_proto, int8, dataset, max_drop, echo) if dataset is not None else []
    size = write_onnx_atomic(int8, output, before_commit)
    return Int8Export(os.fspath(output), size, time.perf_counter() - start, len(calibration), qdq_counts(int8), gate)
