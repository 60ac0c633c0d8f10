"""``maskrt check``: a static conformance check of any ONNX file against TensorRT's ONNX parser and layer limits,
without TensorRT.

:func:`check_model` reads the graph (:class:`maskrt.check.graph.Graph`: types and symbolic shapes), runs every
rule of :mod:`maskrt.check.rules` for the TensorRT versions asked (10.16 and 11.1 by default) with the largest
batch a build will allow, and returns a :class:`CheckReport`: one :class:`~maskrt.check.rules.Finding` per
problem (rule, node, what TensorRT would do, the fix), errors first. ``maskrt build`` runs it before it imports
TensorRT and refuses a graph with errors; ``maskrt export`` prints its summary.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

from maskrt.check.graph import Graph
from maskrt.check.rules import ERROR, INFO, RULES, WARNING, Context, Finding
from maskrt.core.errors import MaskrtError

#: The TensorRT releases whose rules maskrt knows: what --tensorrt accepts -> (major, release).
VERSIONS = {"10": (10, "10.16"), "10.16": (10, "10.16"), "11": (11, "11.1"), "11.1": (11, "11.1")}
SEVERITY_ORDER = {ERROR: 0, WARNING: 1, INFO: 2}

__all__ = ["CheckReport", "Finding", "check_model", "parse_versions"]


def parse_versions(text: Optional[str]) -> list[tuple[int, str]]:
    """"10", "11", "10.16", "11.1" (or None for both) -> [(major, release)]."""
    if text is None:
        return [VERSIONS["10.16"], VERSIONS["11.1"]]
    key = str(text).strip()
    if key not in VERSIONS:
        raise MaskrtError(f"--tensorrt must be one of {', '.join(VERSIONS)} (the releases maskrt's rules were written "
                          f"from), got {text!r}")
    return [VERSIONS[key]]


@dataclass
class CheckReport:
    """What :func:`check_model` found."""

    path: str
    versions: list
    max_batch: int
    findings: list = field(default_factory=list)
    shape_source: str = ""

    @property
    def errors(self) -> list:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        versions = " and ".join(f"TensorRT {v}" for v in self.versions)
        return (f"maskrt check {os.path.basename(self.path)} for {versions} at batch up to {self.max_batch}: "
                f"{len(self.errors)} error(s), {len(self.warnings)} warning(s)")

    def to_dict(self) -> dict:
        return {"schema": "maskrt.check-report", "schema_version": 1, "model": os.path.abspath(self.path),
                "tensorrt": list(self.versions), "max_batch": self.max_batch, "ok": self.ok,
                "errors": len(self.errors), "warnings": len(self.warnings), "shapes": self.shape_source,
                "findings": [f.to_dict() for f in self.findings],
                "rules": [{"id": r.id, "title": r.title, "source": r.source} for r in RULES]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    def rows(self, include_info: bool = False) -> list[list[str]]:
        """Table rows: severity, rule, node, what TensorRT would do, the fix."""
        return [[f.severity, f.rule, f.node, f.message + (f" [{', '.join(f.versions)}]" if len(f.versions) <
                                                            len(self.versions) else ""), f.fix]
                for f in self.findings if include_info or f.severity != INFO]


def _sizes_from_metadata(proto) -> dict:
    """Largest sizes of the named H/W dimensions a maskrt export declares (its canvas), for shape arithmetic."""
    props = {p.key: p.value for p in proto.metadata_props}
    try:
        h, w = json.loads(props.get("max_input_size") or props.get("input_size") or "null") or (None, None)
    except (ValueError, TypeError):
        return {}
    return {"height": int(h), "width": int(w)} if h and w else {}


def check_model(model, tensorrt: Optional[str] = None, max_batch: int = 8, strongly_typed: Optional[bool] = None,
                sizes: Optional[dict] = None) -> CheckReport:
    """Check an ONNX file (path) or ModelProto against the parser and layer rules of TensorRT ``tensorrt``.

    Args:
        model: path or ``onnx.ModelProto``.
        tensorrt: "10", "11", "10.16", "11.1", or None for both 10.16 and 11.1.
        max_batch: the largest batch the engine will take (shape limits are evaluated there).
        strongly_typed: check strong-typing rules on 10.x too; default: for fp16 and Q/DQ graphs (which
            ``maskrt build`` builds strongly typed). 11.x is always strongly typed.
        sizes: values of other named dynamic dimensions (default: the export canvas from maskrt metadata).
    """
    from maskrt.core.onnxfile import import_onnx, load_onnx

    if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
        raise MaskrtError(f"--max-batch must be a positive integer, got {max_batch!r}")
    versions = parse_versions(tensorrt)
    onnx = import_onnx()
    if isinstance(model, onnx.ModelProto):
        proto, path = model, "model"
    else:
        path = os.fspath(model)
        proto = load_onnx(path)
    bound = {**_sizes_from_metadata(proto), **(sizes or {})}
    graph = Graph(proto, {"batch": max_batch, **bound})
    typed_graph = _fp16_or_quantized(graph)
    merged: dict = {}
    for major, release in versions:
        strong = True if major >= 11 else (typed_graph if strongly_typed is None else strongly_typed)
        ctx = Context(major=major, strongly_typed=strong, max_batch=max_batch, sizes=bound)
        for r in RULES:
            if major not in r.majors:
                continue
            for severity, node, message, fix in r.check(graph, ctx) or ():
                key = (r.id, severity, node, message)
                if key in merged:
                    merged[key].versions = merged[key].versions + (release,)
                else:
                    merged[key] = Finding(r.id, severity, node, message, fix, (release,))
    findings = sorted(merged.values(), key=lambda f: (SEVERITY_ORDER[f.severity], f.rule, f.node))
    return CheckReport(path=path, versions=[release for _, release in versions], max_batch=max_batch,
                       findings=findings, shape_source=graph.shape_source)


def _fp16_or_quantized(graph: Graph) -> bool:
    if any(n.op_type in ("QuantizeLinear", "DequantizeLinear") for n in graph.nodes):
        return True
    fp16 = sum(1 for t in graph.initializers.values() if t.data_type == 10)
    fp32 = sum(1 for t in graph.initializers.values() if t.data_type == 1)
    props = {p.key: p.value for p in graph.proto.metadata_props}
    return props.get("precision") in ("fp16", "int8") or fp16 > fp32
