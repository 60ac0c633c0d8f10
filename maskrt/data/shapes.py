"""A deterministic synthetic instance-segmentation dataset: circles, rectangles, triangles and stars.

``make_scene(seed, index)`` draws one scene from ``numpy.random.default_rng([seed, index])``, so any scene can be
generated on its own, in any order, with identical bytes every time. A scene is a textured or noisy background
(a two-colour gradient, low-frequency blotches, or low-contrast stripes / checks) with 1 to 8 filled shapes painted
in order; a later shape may hide part of an earlier one, and each instance's mask is its visible part. A shape
is only placed where it leaves every earlier instance at least 40% of its full area and at least 30 pixels
(a few positions are tried, then the shape is skipped), so every painted shape is annotated. Shape colours keep
a minimum RGB distance from the background and from the shapes they touch.

``write_coco`` writes scenes as PNG files plus a COCO instances JSON with RLE masks.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from maskrt.core.errors import MaskrtError
from maskrt.core.fileio import atomic_output, ensure_writable_folder, write_text_atomic

CLASSES: tuple[str, ...] = ("circle", "rectangle", "triangle", "star")
IMAGE_SIZES: tuple[tuple[int, int], ...] = ((320, 320), (256, 384), (384, 256), (288, 352))

MAX_OBJECTS = 8
MIN_SIZE = 10.0  # px: the smallest longest side of a shape
MAX_SIZE_FRACTION = 0.6  # of the image's short side: the largest longest side
MIN_AREA = 30  # px: the smallest visible area of an instance
MIN_VISIBLE_FRACTION = 0.4  # of an instance's full area that later shapes must leave visible
MIN_CONTRAST = 60.0  # Euclidean RGB distance between a shape's colour and what it is painted on
PLACEMENT_TRIES = 6

_MIN_TRIANGLE_ANGLE = math.radians(25.0)


@dataclass
class Instance:
    """One annotated shape: its category (1-based index into ``CLASSES``) and its visible pixels."""

    category_id: int
    mask: np.ndarray  # bool (H, W): the visible pixels
    bbox: tuple[float, float, float, float]  # COCO (x, y, w, h) of the visible mask, tight
    area: int  # visible pixel count


@dataclass
class Scene:
    """A uint8 (H, W, 3) RGB image and its instances in paint order (later ones on top)."""

    image: np.ndarray
    instances: list[Instance]


def categories() -> list[dict]:
    """COCO ``categories`` entries: ids 1.. in ``CLASSES`` order, supercategory "shape"."""
    return [{"id": i + 1, "name": name, "supercategory": "shape"} for i, name in enumerate(CLASSES)]


# ----------------------------------------------------------------------------------------------- generation


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    ys = np.arange(h, dtype=np.float32)[:, None]
    xs = np.arange(w, dtype=np.float32)[None, :]
    ys.flags.writeable = False
    xs.flags.writeable = False
    return ys, xs


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A float32 (H, W, 3) background: gradient, blotches, or low-contrast stripes / checks (no noise yet)."""
    ys, xs = _grid(h, w)
    c0 = rng.uniform(20.0, 235.0, size=3).astype(np.float32)
    kind = int(rng.integers(3))
    if kind == 0:  # linear gradient between two colours
        c1 = np.clip(c0 + rng.normal(0.0, 45.0, size=3), 0.0, 255.0).astype(np.float32)
        phi = rng.uniform(0.0, 2.0 * math.pi)
        t = xs * np.float32(math.cos(phi)) + ys * np.float32(math.sin(phi))
        corners = [(x * math.cos(phi) + y * math.sin(phi)) for x in (0, w - 1) for y in (0, h - 1)]
        lo, hi = min(corners), max(corners)
        t = (t - np.float32(lo)) / np.float32(max(hi - lo, 1e-6))
        return c0 + t[..., None] * (c1 - c0)
    if kind == 1:  # low-frequency blotches: coarse random colours, upsampled
        from PIL import Image

        gh, gw = (int(v) for v in rng.integers(3, 9, size=2))
        small = np.clip(c0 + rng.normal(0.0, 30.0, size=(gh, gw, 3)), 0.0, 255.0).astype(np.uint8)
        big = Image.fromarray(small).resize((w, h), resample=Image.BICUBIC)
        return np.asarray(big, dtype=np.float32)
    # stripes or checks with a small colour step
    step = rng.normal(size=3)
    step *= rng.uniform(12.0, 30.0) / max(float(np.linalg.norm(step)), 1e-6)
    c1 = (c0 + step).astype(np.float32)
    period = float(rng.uniform(6.0, 40.0))
    if rng.random() < 0.5:
        phi = rng.uniform(0.0, math.pi)
        t = xs * np.float32(math.cos(phi) / period) + ys * np.float32(math.sin(phi) / period)
        on = (np.floor(t).astype(np.int32) & 1).astype(np.float32)
    else:
        on = ((np.floor(xs / period).astype(np.int32) + np.floor(ys / period).astype(np.int32)) & 1)
        on = on.astype(np.float32)
    return c0 + on[..., None] * (c1 - c0)


def _shape_size(rng: np.random.Generator, short_side: int, min_size: float) -> float:
    """Longest side in pixels: log-triangular between min_size and 60% of the short side (favours medium)."""
    lo, hi = math.log(min_size), math.log(max(MAX_SIZE_FRACTION * short_side, min_size))
    u = 0.5 * (rng.random() + rng.random())
    return math.exp(lo + u * (hi - lo))


def _rotate(points: np.ndarray, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return points @ np.array([[c, s], [-s, c]])


def _shape(rng: np.random.Generator, category_id: int, short_side: int) -> tuple[float, np.ndarray]:
    """(radius, vertices): a circle's radius (vertices empty) or a polygon's (K, 2) x/y vertices about (0, 0)."""
    name = CLASSES[category_id - 1]
    if name == "circle":
        return _shape_size(rng, short_side, MIN_SIZE) / 2.0, np.zeros((0, 2))
    if name == "rectangle":
        aspect = rng.uniform(1.0, 3.0)
        long = _shape_size(rng, short_side, max(MIN_SIZE, 5.0 * aspect))
        hl, hs = long / 2.0, long / aspect / 2.0
        corners = np.array([[-hl, -hs], [hl, -hs], [hl, hs], [-hl, hs]])
        return 0.0, _rotate(corners, rng.uniform(0.0, math.pi))
    if name == "triangle":
        while True:  # interior angles, each at least 25 degrees
            a, b = rng.uniform(_MIN_TRIANGLE_ANGLE, math.pi - 2 * _MIN_TRIANGLE_ANGLE, size=2)
            c = math.pi - a - b
            if c >= _MIN_TRIANGLE_ANGLE:
                break
        # vertices on the unit circle: the arc opposite an interior angle A spans 2A
        theta = np.array([0.0, 2.0 * c, 2.0 * (c + a)]) + rng.uniform(0.0, 2.0 * math.pi)
        unit = np.stack([np.cos(theta), np.sin(theta)], axis=1)
        longest = 2.0 * math.sin(max(a, b, c))
        size = _shape_size(rng, short_side, 12.0)
        pts = unit * (size / longest)
        return 0.0, pts - pts.mean(axis=0)
    # five-pointed star, inner / outer radius 0.4 to 0.5
    outer = _shape_size(rng, short_side, 14.0) / 2.0
    inner = outer * rng.uniform(0.4, 0.5)
    theta = np.arange(10) * (math.pi / 5.0) + rng.uniform(0.0, 2.0 * math.pi)
    radius = np.where(np.arange(10) % 2 == 0, outer, inner)
    return 0.0, np.stack([radius * np.cos(theta), radius * np.sin(theta)], axis=1)


def _extent(radius: float, vertices: np.ndarray) -> tuple[float, float, float, float]:
    if len(vertices) == 0:
        return -radius, -radius, radius, radius
    return (float(vertices[:, 0].min()), float(vertices[:, 1].min()),
            float(vertices[:, 0].max()), float(vertices[:, 1].max()))


def _rasterise(radius: float, vertices: np.ndarray, cx: float, cy: float, h: int, w: int):
    """(y0, x0, crop mask) of the shape centred at (cx, cy), clipped to the image."""
    from PIL import Image, ImageDraw

    ex0, ey0, ex1, ey1 = _extent(radius, vertices)
    x0, y0 = max(int(math.floor(cx + ex0)), 0), max(int(math.floor(cy + ey0)), 0)
    x1, y1 = min(int(math.ceil(cx + ex1)) + 1, w), min(int(math.ceil(cy + ey1)) + 1, h)
    if len(vertices) == 0:
        ys = np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)
        xs = np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)
        return y0, x0, xs * xs + ys * ys <= np.float32(radius * radius)
    im = Image.new("L", (x1 - x0, y1 - y0), 0)
    pts = [(float(x) + cx - x0, float(y) + cy - y0) for x, y in vertices]
    ImageDraw.Draw(im).polygon(pts, fill=255)
    return y0, x0, np.asarray(im) > 0


def _pick_colour(rng: np.random.Generator, context: list[np.ndarray]) -> np.ndarray:
    """A random colour at least MIN_CONTRAST from every context colour (else the farthest of 32 candidates)."""
    candidates = rng.uniform(0.0, 255.0, size=(32, 3))
    ctx = np.stack(context)
    dist = np.sqrt(((candidates[:, None, :] - ctx[None, :, :]) ** 2).sum(-1)).min(axis=1)
    ok = np.flatnonzero(dist >= MIN_CONTRAST)
    return candidates[ok[0] if len(ok) else int(dist.argmax())].astype(np.float32)


def _check_seed_index(seed: int, index: int) -> None:
    if int(seed) < 0 or int(index) < 0:
        raise MaskrtError(f"seed and index must be >= 0, got seed {seed}, index {index}")


def make_scene(seed: int, index: int) -> Scene:
    """Scene ``index`` of the dataset ``seed``: depends only on (seed, index), never on other scenes."""
    _check_seed_index(seed, index)
    rng = np.random.default_rng([int(seed), int(index)])
    h, w = IMAGE_SIZES[int(rng.integers(len(IMAGE_SIZES)))]
    short = min(h, w)
    background = _background(rng, h, w)
    canvas = background.copy()
    placed = []  # [category_id, visible mask (H, W), visible area, full area, colour, (y0, x0, y1, x1)]
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        category_id = int(rng.integers(1, len(CLASSES) + 1))
        radius, vertices = _shape(rng, category_id, short)
        ex0, ey0, ex1, ey1 = _extent(radius, vertices)
        crop = None
        for _try in range(PLACEMENT_TRIES):
            cx = rng.uniform(-ex0, max(w - 1 - ex1, -ex0))
            cy = rng.uniform(-ey0, max(h - 1 - ey1, -ey0))
            y0, x0, m = _rasterise(radius, vertices, cx, cy, h, w)
            full = int(np.count_nonzero(m))
            if full < MIN_AREA:
                break
            sl = (slice(y0, y0 + m.shape[0]), slice(x0, x0 + m.shape[1]))
            losses = [int(np.count_nonzero(p[1][sl] & m)) for p in placed]
            if all(p[2] - lost >= max(MIN_VISIBLE_FRACTION * p[3], MIN_AREA) for p, lost in zip(placed, losses)):
                crop = (y0, x0, m, sl, full, losses)
                break
        if crop is None:
            continue
        y0, x0, m, sl, full, losses = crop
        y1, x1 = y0 + m.shape[0], x0 + m.shape[1]
        # colour: contrast with the background around the shape and with the shapes it touches
        ry0, rx0, ry1, rx1 = max(y0 - 3, 0), max(x0 - 3, 0), min(y1 + 3, h), min(x1 + 3, w)
        context = [background[ry0:ry1, rx0:rx1].reshape(-1, 3).mean(axis=0)]
        for p in placed:
            if p[5][0] < ry1 and ry0 < p[5][2] and p[5][1] < rx1 and rx0 < p[5][3] and p[1][ry0:ry1, rx0:rx1].any():
                context.append(p[4])
        colour = _pick_colour(rng, context)
        # slight linear shading across the shape
        amp = rng.uniform(-18.0, 18.0)
        phi = rng.uniform(0.0, 2.0 * math.pi)
        half = max(ex1 - ex0, ey1 - ey0) / 2.0
        ys = (np.arange(y0, y1, dtype=np.float32)[:, None] - np.float32(cy)) * np.float32(math.sin(phi) * amp / half)
        xs = (np.arange(x0, x1, dtype=np.float32)[None, :] - np.float32(cx)) * np.float32(math.cos(phi) * amp / half)
        canvas[sl][m] = colour + (xs + ys)[m][:, None]
        for p, lost in zip(placed, losses):
            if lost:
                p[1][sl] &= ~m
                p[2] -= lost
        visible = np.zeros((h, w), dtype=bool)
        visible[sl] = m
        placed.append([category_id, visible, full, full, colour, (y0, x0, y1, x1)])
    sigma = rng.uniform(3.0, 12.0)
    canvas += rng.standard_normal(size=canvas.shape, dtype=np.float32) * np.float32(sigma)
    image = np.rint(np.clip(canvas, 0.0, 255.0)).astype(np.uint8)
    instances = []
    for category_id, visible, area, _full, _colour, (y0, x0, y1, x1) in placed:
        sub = visible[y0:y1, x0:x1]
        rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
        bx, by = x0 + int(cols[0]), y0 + int(rows[0])
        bbox = (float(bx), float(by), float(x0 + int(cols[-1]) - bx + 1), float(y0 + int(rows[-1]) - by + 1))
        instances.append(Instance(category_id=category_id, mask=visible, bbox=bbox, area=int(area)))
    return Scene(image=image, instances=instances)


# ----------------------------------------------------------------------------------------------- COCO output


def _image_entry(image_id: int, file_name: str, scene: Scene) -> dict:
    h, w = scene.image.shape[:2]
    return {"id": int(image_id), "file_name": file_name, "height": int(h), "width": int(w)}


def _annotation_entries(scene: Scene, image_id: int, first_id: int) -> list[dict]:
    from maskrt.data.coco import encode_rle

    return [
        {"id": first_id + k, "image_id": int(image_id), "category_id": inst.category_id,
         "segmentation": encode_rle(inst.mask), "area": int(inst.area), "bbox": [float(v) for v in inst.bbox],
         "iscrowd": 0}
        for k, inst in enumerate(scene.instances)
    ]


def coco_dict(scenes, file_names, image_ids=None) -> dict:
    """A COCO instances dict for in-memory scenes (image ids 1..N unless ``image_ids`` is given).

    Loads with ``pycocotools.coco.COCO`` after ``coco.dataset = coco_dict(...); coco.createIndex()``.
    """
    scenes, file_names = list(scenes), list(file_names)
    ids = list(range(1, len(scenes) + 1)) if image_ids is None else [int(i) for i in image_ids]
    if not len(scenes) == len(file_names) == len(ids):
        raise MaskrtError(f"got {len(scenes)} scenes, {len(file_names)} file names and {len(ids)} image ids")
    images, annotations = [], []
    for scene, name, image_id in zip(scenes, file_names, ids):
        images.append(_image_entry(image_id, name, scene))
        annotations.extend(_annotation_entries(scene, image_id, len(annotations) + 1))
    return {"info": {"description": "maskrt synthetic shapes"}, "licenses": [], "images": images,
            "annotations": annotations, "categories": categories()}


def file_name(seed: int, index: int) -> str:
    """The image file name of scene ``index`` of dataset ``seed`` (relative to the images folder)."""
    return f"{seed}_{index:06d}.png"


def write_coco(out_dir: str, count: int, seed: int, *, progress: bool = False, start: int = 0) -> str:
    """Write scenes ``start .. start + count - 1`` of dataset ``seed`` as a COCO instances dataset.

    Writes ``out_dir/images/<seed>_<index:06d>.png`` and then ``out_dir/annotations.json`` (image id = index + 1;
    ``file_name`` relative to ``out_dir/images``; masks as compressed RLE), the JSON through a temporary name, so
    an interrupted run never leaves a half-written one. Returns the JSON path. ``progress`` shows a progress bar.
    """
    from PIL import Image

    if int(count) < 1:
        raise MaskrtError(f"count must be >= 1, got {count}")
    _check_seed_index(seed, start)
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise MaskrtError(f"output folder {out_dir} is an existing file")
    images_dir = os.path.join(out_dir, "images")
    ensure_writable_folder(images_dir)
    json_path = os.path.join(out_dir, "annotations.json")
    images, annotations = [], []
    from rich.progress import Progress

    try:
        with Progress(transient=True, disable=not progress) as bar:
            task = bar.add_task("generating shapes", total=int(count))
            for index in range(int(start), int(start) + int(count)):
                scene = make_scene(seed, index)
                name = file_name(seed, index)
                path = os.path.join(images_dir, name)
                with atomic_output(path) as tmp:
                    Image.fromarray(scene.image).save(tmp, format="PNG", compress_level=1)
                images.append(_image_entry(index + 1, name, scene))
                annotations.extend(_annotation_entries(scene, index + 1, len(annotations) + 1))
                bar.advance(task)
        data = {"info": {"description": "maskrt synthetic shapes", "seed": int(seed), "start": int(start),
                         "count": int(count)},
                "licenses": [], "images": images, "annotations": annotations, "categories": categories()}
    except OSError as e:
        raise MaskrtError(f"cannot write the dataset to {out_dir}: {e.strerror or e}") from None
    write_text_atomic(json_path, json.dumps(data))
    return json_path
