"""The ``target="tensorrt"`` export: one TensorRT plugin node per RoI pooling stage.

The portable graph expresses ``maskrt::multilevel_roi_align`` as level assignment, a sort, one ``RoiAlign`` per
level and a gather. For TensorRT the whole stage becomes a single node that TensorRT's ONNX parser turns into the
maskrt plugin (``maskrt/plugins``):

* ``op_type`` is the plugin name (:data:`maskrt.plugins.spec.PLUGIN_NAME`): the parser imports any op it has
  no importer for as the plugin registered under that name, with the version and namespace taken from the
  string attributes ``plugin_version`` and ``plugin_namespace``;
* the node lives in a custom domain (:data:`maskrt.plugins.spec.ONNX_DOMAIN`, imported at version 1), which the
  parser does not look at but which keeps the ONNX checker and other tools from mistaking it for a standard op;
* its other attributes are the plugin's fields (ints become int32 fields, ``scales`` a float32 array, ``mode``
  a char field);
* its inputs are the (K, 5) rois followed by the feature maps, finest first; its output is (K, C, PH, PW).

Everything else (NMS included) is the same as in the portable graph. ONNX Runtime runs such a graph through
:mod:`maskrt.backends.onnxrt.bridge`.
"""

from __future__ import annotations

from collections.abc import Sequence

from maskrt.core.errors import MaskrtError
from maskrt.plugins import spec

TARGETS = ("portable", "tensorrt")


def check_target(target: str) -> str:
    """``target`` if it is one of :data:`TARGETS`, else MaskrtError."""
    if target not in TARGETS:
        raise MaskrtError(f"target must be one of {', '.join(TARGETS)}, got {target!r}")
    return target


def _integral(value, name: str) -> int:
    """``value`` as an int for an INT32 plugin field; a fractional value would be truncated silently by TensorRT."""
    if float(value) != int(value):
        raise MaskrtError(f"the TensorRT plugin takes an integer {name}, got {value}: use an integer (the "
                          "portable target takes any value)")
    return int(value)


def plugin_node(g, maps: Sequence, rois, scales: Sequence[float], output_height: int, output_width: int,
                sampling_ratio: int, aligned: bool, mode: str, canonical_scale: int, canonical_level: int):
    """Write the plugin node for one ``maskrt::multilevel_roi_align`` (called by the export rule)."""
    if len(maps) > spec.MAX_LEVELS:
        raise MaskrtError(f"the TensorRT plugin takes at most {spec.MAX_LEVELS} feature maps, got {len(maps)}")
    out = g.op(
        f"{spec.ONNX_DOMAIN}::{spec.PLUGIN_NAME}",
        rois,
        *maps,
        plugin_version_s=spec.PLUGIN_VERSION,
        plugin_namespace_s=spec.PLUGIN_NAMESPACE,
        output_height_i=int(output_height),
        output_width_i=int(output_width),
        sampling_ratio_i=int(sampling_ratio),
        aligned_i=int(bool(aligned)),
        mode_s=str(mode),
        canonical_scale_i=_integral(canonical_scale, "canonical_scale"),
        canonical_level_i=int(canonical_level),
        scales_f=[float(s) for s in scales],
    )
    first = maps[0].type()
    sizes = first.varyingSizes() if hasattr(first, "varyingSizes") else None
    channels = sizes[1] if sizes and len(sizes) == 4 else None
    count = rois.type().varyingSizes()[0] if rois.type().varyingSizes() else None
    out.setType(first.with_sizes([count, channels, int(output_height), int(output_width)]))
    return out


def plugin_nodes(proto) -> list:
    """The plugin nodes of an ONNX model."""
    return [n for n in proto.graph.node if n.op_type == spec.PLUGIN_NAME and n.domain == spec.ONNX_DOMAIN]
