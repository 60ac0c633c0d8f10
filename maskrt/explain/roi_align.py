"""An interactive page that shows RoI Pool and RoI Align on real features: ``maskrt explain roi-align``.

The page is one self-contained HTML file (inline CSS and JavaScript, the image as a data URI, the features as
JSON) that opens from disk in any browser, without a network. On it the user drags and resizes a box over the
image; the page's JavaScript pools the embedded feature map under that box with RoI Pool and RoI Align, with
exactly :func:`maskrt.ops.roi_pool` / :func:`maskrt.ops.roi_align`'s semantics, and draws every step: the
quantized cells and bins of RoI Pool with the area they lose and add, the exact bins and sampling points of RoI
Align with the four neighbours and bilinear weights of a hovered point, both outputs as numbers and heat maps,
and anchors of 3 sizes x 3 ratios scanning the image.

Pixel space. The box lives in the pixels of the image *as the model sees it*: the input is resized like the
shapes model's transform does (short side 320, long side at most 384) and that resized image is what the page
shows. The feature map is the level of stride ``s`` computed on that image zero-padded to a multiple of 32, so
``spatial_scale = 1 / s`` maps box corners onto it, as in the model's RoI heads.

Features. ``features="model"``: the FPN level of the embedded ``shapes`` model (P2..P5 for strides 4..32), of
which the 8 channels with the largest variance are embedded. ``features="luminance"``: one channel, the mean
luminance (Rec. 601, in [0, 1]) of each ``s x s`` cell of the padded image. Values are rounded to 6 significant
digits; the embedded numbers are the source of truth, in float32, for the page and for any check against
:mod:`maskrt.ops`.

The page embeds its state as JSON in ``<script type="application/json" id="roi-align-input">`` (the keys of
:func:`page_state` but ``image``, which is the ``src`` of ``<img id="roi-align-image">``), and after load writes
what it computed, ``{"output": [C][PH][PW]}``, into the elements ``#roi-align-output`` and ``#roi-pool-output``
(kept up to date as the user edits the box).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from functools import lru_cache
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch
import torch.nn.functional as F

from maskrt.core.errors import MaskrtError
from maskrt.core.fileio import atomic_write, check_output_file

# Stride -> (key of the shapes model's FPN output, level name). The 'pool' level (stride 64) is left out: its
# maps are a few cells wide, too coarse to show anything.
LEVELS = {4: ("0", "P2"), 8: ("1", "P3"), 16: ("2", "P4"), 32: ("3", "P5")}
EMBEDDED_CHANNELS = 8  # of the level's 64: the ones with the largest variance (keeps the page below ~1 MB)
SIGNIFICANT_DIGITS = 6
MAX_OUTPUT_SIZE = 32  # larger outputs have bins too small to see
MAX_SAMPLING_RATIO = 8
SCENE_INDEX = 0  # the default image is scene (seed, 0) of maskrt's synthetic shapes
ANCHOR_SIZES = (32, 64, 128)  # image pixels, for the scan: 3 sizes x 3 ratios, as in Faster R-CNN's RPN
ANCHOR_RATIOS = (0.5, 1.0, 2.0)  # height / width
BOX_MARGIN = 4  # image pixels added around the default box's object

_HERE = os.path.dirname(os.path.abspath(__file__))
Box = tuple[float, float, float, float]
ImageLike = Union[None, str, os.PathLike, np.ndarray]


# ------------------------------------------------------------------------------------------------ arguments


def parse_box(text: str) -> Box:
    """``"x1,y1,x2,y2"`` (image pixels) -> a tuple of 4 floats; MaskrtError (one line) on anything else."""
    fix = "give the box as four numbers x1,y1,x2,y2, e.g. --box 40,60,160,150"
    if not isinstance(text, str):
        raise MaskrtError(f"box must be text x1,y1,x2,y2, got {type(text).__name__}: {fix}")
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise MaskrtError(f"box {text!r} has {len(parts)} values, not 4: {fix}")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        raise MaskrtError(f"box {text!r} is not four numbers: {fix}") from None
    if not all(math.isfinite(v) for v in values):
        raise MaskrtError(f"box {text!r} has a value that is not finite: {fix}")
    return values  # type: ignore[return-value]


def _box_values(box: Any) -> Box:
    """A box given as text or as a sequence of 4 numbers -> 4 finite floats."""
    if isinstance(box, str):
        return parse_box(box)
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise MaskrtError(f"box must be x1,y1,x2,y2 (text or 4 numbers), got {box!r}") from None
    if len(values) != 4 or not all(math.isfinite(v) for v in values):
        raise MaskrtError(f"box must be 4 finite numbers x1,y1,x2,y2, got {box!r}")
    return values  # type: ignore[return-value]


def _check_box(box: Box, width: int, height: int, resized_note: str) -> None:
    x1, y1, x2, y2 = box
    for axis, lo, hi in (("x", x1, x2), ("y", y1, y2)):
        if hi < lo:
            raise MaskrtError(f"box {_fmt_box(box)} has {axis}2 < {axis}1 ({hi:g} < {lo:g}): give the top-left corner "
                              "first, as x1,y1,x2,y2")
    # Closed intervals: a box may touch an edge, or stick out of the image (the page shows what happens to
    # samples beyond the feature map), but it must share at least a point with the image.
    if x2 < 0 or y2 < 0 or x1 > width or y1 > height:
        raise MaskrtError(
            f"box {_fmt_box(box)} lies outside the image, which is {width}x{height} pixels as the page shows it"
            f"{resized_note}: give a box that overlaps (0,0)-({width},{height})"
        )


def _fmt_box(box: Sequence[float]) -> str:
    return ",".join(f"{v:g}" for v in box)


def _output_pair(output_size: Any) -> tuple[int, int]:
    if isinstance(output_size, bool):
        raise MaskrtError(f"output_size must be an integer, got {output_size!r}")
    if isinstance(output_size, (int, np.integer)):
        pair = (int(output_size), int(output_size))
    elif isinstance(output_size, (tuple, list)) and len(output_size) == 2 and all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in output_size
    ):
        pair = (int(output_size[0]), int(output_size[1]))
    else:
        raise MaskrtError(f"output_size must be an integer or a pair (height, width), got {output_size!r}")
    if not all(1 <= v <= MAX_OUTPUT_SIZE for v in pair):
        raise MaskrtError(f"output_size {output_size!r} is out of range: give 1 to {MAX_OUTPUT_SIZE}, e.g. 7")
    return pair


def _check_options(stride: Any, sampling_ratio: Any, mode: Any, aligned: Any, features: Any, seed: Any) -> None:
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or int(stride) not in LEVELS:
        raise MaskrtError(
            f"stride {stride!r} is not offered: choose 4, 8, 16 or 32 (the shapes model's FPN levels P2 to P5)"
        )
    if isinstance(sampling_ratio, bool) or not isinstance(sampling_ratio, (int, np.integer)):
        raise MaskrtError(f"sampling_ratio must be an integer (<= 0: adaptive), got {sampling_ratio!r}")
    if sampling_ratio > MAX_SAMPLING_RATIO:
        raise MaskrtError(
            f"sampling_ratio {sampling_ratio} is too large to show: give 1 to {MAX_SAMPLING_RATIO}, or 0 for adaptive"
        )
    if mode not in ("avg", "max"):
        raise MaskrtError(f"mode {mode!r} is not known: choose avg or max")
    if not isinstance(aligned, (bool, np.bool_)):
        raise MaskrtError(f"aligned must be True or False, got {aligned!r}")
    if features not in ("model", "luminance"):
        raise MaskrtError(f"features {features!r} is not known: choose model or luminance")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise MaskrtError(f"seed must be an integer >= 0, got {seed!r}")


# ------------------------------------------------------------------------------------------------ image


@lru_cache(maxsize=2)
def _shapes_model(weights: bool = True):
    """The shapes model in eval mode, built once (~0.3 s); without ``weights`` only its transform is used."""
    from maskrt.model import build, load_checkpoint
    from maskrt.model.presets import get_preset

    model = build("shapes").eval()
    if weights:
        path = get_preset("shapes").weights_path()
        if path is None:
            raise MaskrtError("the shapes model's embedded weights are missing from this install: reinstall maskrt, "
                              "or use luminance features")
        load_checkpoint(path, model)
    return model


def _load_image(image: ImageLike, seed: int) -> tuple[np.ndarray, str, Optional[tuple]]:
    """(H, W, 3) uint8 image, a short description, and the bbox (x, y, w, h) of its largest object if known."""
    if image is None:
        from maskrt.data.shapes import make_scene

        scene = make_scene(int(seed), SCENE_INDEX)
        largest = max(scene.instances, key=lambda inst: inst.area, default=None)
        return scene.image, f"shapes scene {int(seed)}/{SCENE_INDEX}", largest.bbox if largest else None
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or 0 in image.shape:
            raise MaskrtError(f"image array must be (H, W, 3) uint8 RGB, got {image.shape} {image.dtype}")
        return np.ascontiguousarray(image), "an image array", None
    if isinstance(image, (str, os.PathLike)):
        from maskrt.data.images import read_image

        try:
            chw = read_image(image)
        except MaskrtError as e:
            # PIL's messages can span lines; the CLI prints one.
            message = " ".join(str(e).split())
            fix = "check the path" if message.startswith("image not found") else "give a PNG, JPEG or other image file"
            raise MaskrtError(f"{message}: {fix}") from None
        return chw.permute(1, 2, 0).numpy(), os.path.basename(os.fspath(image)), None
    raise MaskrtError(f"image must be a file path or an (H, W, 3) uint8 array, got {type(image).__name__}")


def _model_input(rgb: np.ndarray, model) -> tuple[np.ndarray, torch.Tensor]:
    """The resized uint8 image the page shows, and the normalised, resized, padded (1, 3, H, W) model input."""
    from maskrt.model.transform import batch_images, normalize, resize_image

    x = torch.from_numpy(rgb).permute(2, 0, 1).float() / 255.0
    resized = resize_image(x, model.min_size[-1], model.max_size)
    shown = (resized.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    # Same order as the model's transform: normalise, then resize, then pad.
    normed = resize_image(normalize(x, model.image_mean, model.image_std), model.min_size[-1], model.max_size)
    return np.ascontiguousarray(shown), batch_images([normed], model.size_divisible)


def _png_data_uri(rgb: np.ndarray) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb, mode="RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


# ------------------------------------------------------------------------------------------------ features


def _model_features(batch: torch.Tensor, stride: int, model) -> tuple[np.ndarray, list[str]]:
    """(C, Hm, Wm) float32: the EMBEDDED_CHANNELS channels of the level with the largest variance."""
    key, level = LEVELS[stride]
    with torch.no_grad():
        maps = model.backbone(batch)
    if key not in maps:
        raise MaskrtError(f"the shapes model has no feature map of stride {stride}: choose 4, 8, 16 or 32")
    fmap = maps[key][0]
    if batch.shape[-1] // fmap.shape[-1] != stride:
        raise MaskrtError(f"the shapes model's level {level} has stride {batch.shape[-1] // fmap.shape[-1]}, "
                          f"not {stride}: this maskrt build does not match the page")
    variance = fmap.flatten(1).var(dim=1)
    order = torch.argsort(variance, descending=True, stable=True)[:EMBEDDED_CHANNELS].tolist()
    names = [f"{level} channel {c}" for c in order]
    return fmap[order].numpy().astype(np.float32), names


def _luminance_features(shown: np.ndarray, padded_hw: tuple[int, int], stride: int) -> np.ndarray:
    """(1, Hm, Wm) float32: mean Rec. 601 luminance in [0, 1] of each stride x stride cell, zero padding."""
    rgb = torch.from_numpy(shown).float() / 255.0
    lum = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    canvas = torch.zeros(padded_hw, dtype=torch.float32)
    canvas[: lum.shape[0], : lum.shape[1]] = lum
    return F.avg_pool2d(canvas[None, None], kernel_size=stride, stride=stride)[0].numpy()


def _rounded(values: np.ndarray) -> list:
    """Nested lists of floats rounded to SIGNIFICANT_DIGITS: short in JSON (repr of the rounded double)."""
    text = np.char.mod(f"%.{SIGNIFICANT_DIGITS}g", np.asarray(values, dtype=np.float32))
    return text.astype(np.float64).tolist()


def _default_box(source_bbox: Optional[tuple], orig_hw: tuple[int, int], shown_hw: tuple[int, int]) -> Box:
    """Around the largest object of a generated scene (scaled to the shown image), else the middle third."""
    h, w = shown_hw
    if source_bbox is None:
        return (float(round(w / 3)), float(round(h / 3)), float(round(2 * w / 3)), float(round(2 * h / 3)))
    sx, sy = w / orig_hw[1], h / orig_hw[0]
    bx, by, bw, bh = source_bbox
    x1 = max(0.0, math.floor(bx * sx) - BOX_MARGIN)
    y1 = max(0.0, math.floor(by * sy) - BOX_MARGIN)
    x2 = min(float(w), math.ceil((bx + bw) * sx) + BOX_MARGIN)
    y2 = min(float(h), math.ceil((by + bh) * sy) + BOX_MARGIN)
    return (float(x1), float(y1), float(x2), float(y2))


def _anchor_cells() -> list[list[float]]:
    """The 9 zero-centred scan anchors (x1, y1, x2, y2), in the RPN's order (each ratio, then each size)."""
    from maskrt.model.anchors import cell_anchors

    return cell_anchors(ANCHOR_SIZES, ANCHOR_RATIOS).tolist()


# ------------------------------------------------------------------------------------------------ page


def page_state(
    image: ImageLike = None,
    box: Any = None,
    stride: int = 8,
    output_size: Any = 7,
    sampling_ratio: int = 2,
    mode: str = "avg",
    aligned: bool = False,
    features: str = "model",
    seed: int = 0,
) -> dict:
    """The page's initial state, the JSON it embeds.

    Args:
        image: an image file, an (H, W, 3) uint8 RGB array, or None for the generated shapes scene ``seed``.
        box: ``"x1,y1,x2,y2"`` or 4 numbers, in the pixels of the image as shown (resized as the model does);
            None: around the scene's largest object (the middle third of another image).
        stride: 4, 8, 16 or 32: the FPN level whose features are pooled (spatial_scale = 1 / stride).
        output_size: PH = PW, or (PH, PW), 1..32.
        sampling_ratio: RoI Align's sample points per bin and axis; <= 0: adaptive, ceil(roi_size / output_size).
        mode: RoI Align's reduction over a bin's samples, "avg" or "max".
        aligned: RoI Align's half-pixel offset.
        features: "model" (the shapes model's FPN level) or "luminance" (the image's luminance per cell).
        seed: the shapes scene shown when ``image`` is None.

    Returns:
        A JSON-ready dict: ``feature`` [C][Hm][Wm], ``spatial_scale``, ``box``, ``output_size`` [PH, PW],
        ``sampling_ratio`` (0 when adaptive), ``aligned``, ``mode``, and for the page ``stride``, ``channels``
        (names), ``features``, ``level``, ``image`` (PNG data URI), ``image_size`` / ``original_size`` /
        ``map_size`` ([H, W]), ``anchors`` and ``source``.

    Raises:
        MaskrtError: one line naming the bad argument and the fix.
    """
    _check_options(stride, sampling_ratio, mode, aligned, features, seed)
    ph, pw = _output_pair(output_size)
    given_box = None if box is None else _box_values(box)
    rgb, source, object_bbox = _load_image(image, seed)
    # The luminance page needs only the model's resize and padding rules, not its weights.
    model = _shapes_model(weights=features == "model")
    shown, batch = _model_input(rgb, model)
    shown_hw = (int(shown.shape[0]), int(shown.shape[1]))
    orig_hw = (int(rgb.shape[0]), int(rgb.shape[1]))
    if given_box is None:
        given_box = _default_box(object_bbox, orig_hw, shown_hw)
    note = "" if shown_hw == orig_hw else f" (the {orig_hw[1]}x{orig_hw[0]} input resized as the model does)"
    _check_box(given_box, shown_hw[1], shown_hw[0], note)

    if features == "model":
        feature, channels = _model_features(batch, int(stride), model)
        level = f"FPN level {LEVELS[int(stride)][1]} of the shapes model"
    else:
        feature = _luminance_features(shown, (int(batch.shape[-2]), int(batch.shape[-1])), int(stride))
        channels = ["luminance"]
        level = "image luminance, mean per cell"
    return {
        "feature": _rounded(feature),
        "spatial_scale": 1.0 / int(stride),
        "box": [float(v) for v in given_box],
        "output_size": [ph, pw],
        "sampling_ratio": max(int(sampling_ratio), 0),
        "aligned": bool(aligned),
        "mode": mode,
        "stride": int(stride),
        "channels": channels,
        "features": features,
        "level": level,
        "image": _png_data_uri(shown),
        "image_size": list(shown_hw),
        "original_size": list(orig_hw),
        "map_size": [int(feature.shape[-2]), int(feature.shape[-1])],
        "anchors": {"sizes": list(ANCHOR_SIZES), "ratios": list(ANCHOR_RATIOS), "cells": _anchor_cells()},
        "source": source,
    }


def _asset(name: str) -> str:
    with open(os.path.join(_HERE, name), encoding="utf-8") as f:
        return f.read()


def _json_for_script(value: Any) -> str:
    """JSON that cannot end its <script> element early: <, > and & escaped as \\u escapes (valid JSON)."""
    text = json.dumps(value, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(state: dict) -> str:
    """The HTML page for a :func:`page_state` dict.

    The image goes into the ``src`` of ``<img id="roi-align-image">`` rather than into the JSON, so that the
    browser's load event waits for it (a screenshot then shows it); the rest of the state is the JSON of
    ``#roi-align-input``. roi_align.html, roi_align.css and roi_align.js next to this module are read here and
    inlined.
    """
    js = _asset("roi_align.js")
    css = _asset("roi_align.css")
    # Inlined code must not close its own element.
    if re.search(r"</script", js, re.IGNORECASE) or re.search(r"</style", css, re.IGNORECASE):
        raise AssertionError("roi_align.js / roi_align.css must not contain </script or </style")
    data = {k: v for k, v in state.items() if k != "image"}
    parts = {
        "CSS": css,
        "JS": js,
        "INPUT_JSON": _json_for_script(data),
        "IMAGE_SRC": html.escape(state.get("image", ""), quote=True),
        "SOURCE": html.escape(str(state.get("source", ""))),
    }
    # One pass over the template: inlined text is never searched for placeholders again.
    return re.sub(r"@@([A-Z_]+)@@", lambda m: parts[m.group(1)], _asset("roi_align.html"))


def write_page(
    out_path: Union[str, os.PathLike],
    image: ImageLike = None,
    box: Any = None,
    stride: int = 8,
    output_size: Any = 7,
    sampling_ratio: int = 2,
    mode: str = "avg",
    aligned: bool = False,
    features: str = "model",
    seed: int = 0,
) -> str:
    """Write the explainer page to ``out_path`` (atomically) and return the path.

    Options are :func:`page_state`'s. The command ``maskrt explain roi-align`` maps onto them one to one:
    ``--image``, ``--box`` (text, parsed here), ``--stride``, ``--output-size``, ``--sampling-ratio``, ``--mode``,
    ``--aligned/--no-aligned``, and ``--luminance`` as ``features="luminance"``.

    Raises:
        MaskrtError: bad options (see :func:`page_state`), ``out_path`` is the input image or a folder, or the
            file cannot be written. Nothing is left behind then.
    """
    out = os.fspath(out_path)
    if os.path.isdir(out):
        raise MaskrtError(f"output path {out} is a folder: give a file name, e.g. {os.path.join(out, 'explain.html')}")
    check_output_file(out, "--out", inputs=[image] if isinstance(image, (str, os.PathLike)) else [])
    state = page_state(image=image, box=box, stride=stride, output_size=output_size, sampling_ratio=sampling_ratio,
                       mode=mode, aligned=aligned, features=features, seed=seed)
    return atomic_write(out, render_page(state))
