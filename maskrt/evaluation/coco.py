"""COCO evaluation of any model maskrt can run: bbox and segm AP through pycocotools.

``load_coco`` reads and checks a COCO annotation file and its image folder; ``category_mapping`` matches the
model's class names to the dataset's categories by name; ``evaluate`` runs the :class:`~maskrt.inference.Predictor`
over the images (any runner, or a :class:`~maskrt.backends.select.RunnerSpec`), turns the detections into COCO
results with :func:`maskrt.data.coco.coco_results` and scores them with ``evaluate_results``.

Metric values are fractions in [0, 1] (pycocotools' own scale; the CLI prints percentages). A size-range metric
(APs, APm, APl) for which the evaluated images hold no ground-truth object of that size is None (pycocotools
reports -1). Predicted masks are binarised at 0.5. For segm, results are scored without their boxes so that
pycocotools takes each instance's area from its mask (small/medium/large by mask area, as COCO's own evaluation).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional, Sequence

from maskrt.core.environment import file_sha256
from maskrt.core.errors import MaskrtError
from maskrt.core.fileio import atomic_write
from maskrt.data.coco import coco_results
from maskrt.data.images import IMAGE_EXTENSIONS

IOU_TYPES = ("bbox", "segm")
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")
# Names that mark a class index the model never predicts as an object (the background, unused COCO ids).
IGNORED_NAMES = {"__background__", "background", "n/a"}


def _pycocotools():
    try:
        from pycocotools import mask as mask_utils
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval
    except ImportError as e:
        raise MaskrtError("COCO evaluation needs pycocotools: pip install pycocotools") from e
    return COCO, COCOeval, mask_utils


# -- the dataset ---------------------------------------------------------------------------------------------------
@dataclass
class CocoDataset:
    """A checked COCO annotation file and the images it names.

    ``image_ids`` and ``files`` are parallel (the images evaluated, in file order, cut to ``limit``);
    ``categories`` maps category id to name; ``has_masks`` is True when every annotation has a segmentation.
    """

    path: str
    images_dir: str
    coco: object  # pycocotools.coco.COCO
    image_ids: list
    files: list
    categories: dict
    has_masks: bool = True
    num_listed: int = 0  # images in the file, before ``limit``

    @property
    def num_images(self) -> int:
        return len(self.image_ids)

    @property
    def num_annotations(self) -> int:
        return sum(len(self.coco.getAnnIds(imgIds=[i])) for i in self.image_ids)

    def iou_types(self) -> tuple:
        return IOU_TYPES if self.has_masks else ("bbox",)

    def info(self) -> dict:
        return {"annotations": os.path.abspath(self.path), "sha256": file_sha256(self.path),
                "images_dir": os.path.abspath(self.images_dir), "num_images": self.num_images,
                "num_images_listed": self.num_listed, "num_annotations": self.num_annotations,
                "categories": {str(k): v for k, v in self.categories.items()}}


def load_coco(annotations: str, images_dir: str, limit: Optional[int] = None) -> CocoDataset:
    """Read and check a COCO instances file and the folder holding its images.

    Refuses, with one line naming the problem: a missing or unparsable file, JSON that is not a COCO instances
    file, annotations that point at unknown images or categories, a missing or empty image folder, images the
    file names that the folder lacks (the first one and how many), and ``limit`` < 1. ``limit`` keeps the first
    ``limit`` images of the file.
    """
    COCO, _, _ = _pycocotools()
    if limit is not None and limit < 1:
        raise MaskrtError(f"--limit must be >= 1, got {limit}")
    if not os.path.isfile(annotations):
        raise MaskrtError(f"COCO annotation file not found: {annotations}")
    try:
        with open(annotations, encoding="utf-8") as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise MaskrtError(f"{annotations} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise MaskrtError(f"cannot read {annotations}: {getattr(e, 'strerror', None) or e}") from None
    data = _check_coco(data, annotations)

    if not os.path.isdir(images_dir):
        raise MaskrtError(f"--images {images_dir} is not a folder")
    if not any(n.lower().endswith(IMAGE_EXTENSIONS) for n in os.listdir(images_dir)):
        raise MaskrtError(f"--images {images_dir} holds no images ({', '.join(IMAGE_EXTENSIONS)})")

    images = data["images"]
    num_listed = len(images)
    if limit is not None:
        images = images[:limit]
    files = [os.path.join(images_dir, str(img["file_name"])) for img in images]
    missing = [img["file_name"] for img, p in zip(images, files) if not os.path.isfile(p)]
    if missing:
        raise MaskrtError(f"{len(missing)} of the {len(images)} images that {annotations} names are not in "
                          f"{images_dir} (first: {missing[0]})")

    _check_sizes(images, files, annotations)

    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
    has_masks = all(a.get("segmentation") for a in data["annotations"])
    return CocoDataset(annotations, images_dir, coco, [img["id"] for img in images], files, categories, has_masks,
                       num_listed)


def _check_sizes(images: list, files: list, path: str) -> None:
    """The width and height the file gives each image must be the image's own (upright, as maskrt reads it):
    annotations made for other images (or a resized copy) would score wrong without a word. Absent sizes are
    filled in from the files (pycocotools needs them for polygon masks)."""
    from maskrt.data.images import image_size

    wrong = []
    for img, file in zip(images, files):
        h, w = image_size(file)
        given = (img.get("height"), img.get("width"))
        if given == (None, None):
            img["height"], img["width"] = h, w
            continue
        try:
            gh, gw = (int(v) for v in given)
            if (gh, gw) != (float(given[0]), float(given[1])):
                raise ValueError
        except (TypeError, ValueError, OverflowError):
            raise MaskrtError(f"{path}: image {img['file_name']} has width/height {given[1]!r}/{given[0]!r}; "
                              "they must be whole numbers of pixels") from None
        if (gh, gw) != (h, w):
            wrong.append((img["file_name"], gw, gh, w, h))
    if wrong:
        name, gw, gh, w, h = wrong[0]
        turned = " (the file's EXIF orientation turns it; maskrt reads images upright)" if (gh, gw) == (w, h) else ""
        raise MaskrtError(f"{path}: {len(wrong)} of the {len(images)} images are not the size the file gives (first: "
                          f"{name} is {w}x{h}, the file says {gw}x{gh}{turned}); the annotations were made for other "
                          "images: point --images at the right folder or fix width/height")


def _is_id(value) -> bool:
    return isinstance(value, (int, str)) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _segmentation_problem(seg) -> Optional[str]:
    """Why ``seg`` is not a COCO segmentation pycocotools can decode, or None (absent counts as none)."""
    if seg is None or seg == []:
        return None
    if isinstance(seg, list):
        for poly in seg:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2 or not all(_is_number(v) for v in poly):
                return "a polygon must be a list of at least 3 x, y pairs"
        return None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and not isinstance(v, bool)
                                                                   and v > 0 for v in size)):
            return "RLE needs \"size\": [height, width]"
        if isinstance(counts, list):
            if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts):
                return "uncompressed RLE counts must be integers >= 0"
            if sum(counts) != size[0] * size[1]:
                return "uncompressed RLE counts do not add up to height x width"
            return None
        if not isinstance(counts, str):
            return "RLE needs \"counts\" (a string or a list of integers)"
        return None
    return f"it is {type(seg).__name__}"


def _check_coco(data, path: str) -> dict:
    """Structural checks pycocotools does not make (it fails later with a KeyError); fills ``area`` and
    ``iscrowd`` where absent."""
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ("images", "annotations",
                                                                                      "categories")):
        raise MaskrtError(f"{path} is not a COCO instances file: it needs \"images\", \"annotations\" and "
                          "\"categories\" lists")
    if not data["images"]:
        raise MaskrtError(f"{path} lists no images")
    if not data["categories"]:
        raise MaskrtError(f"{path} lists no categories")
    image_ids = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or "id" not in img or not img.get("file_name"):
            raise MaskrtError(f"{path}: image entry {i} lacks an \"id\" or a \"file_name\"")
        if not _is_id(img["id"]) or not isinstance(img["file_name"], str):
            raise MaskrtError(f"{path}: image entry {i} needs a number or text \"id\" and a text \"file_name\"")
        if img["id"] in image_ids:
            raise MaskrtError(f"{path}: image id {img['id']} appears twice")
        image_ids.add(img["id"])
    cat_ids = set()
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or "id" not in cat or "name" not in cat or not _is_id(cat["id"]):
            raise MaskrtError(f"{path}: category entry {i} lacks an \"id\" (a number) or a \"name\"")
        if cat["id"] in cat_ids:
            raise MaskrtError(f"{path}: category id {cat['id']} appears twice")
        cat_ids.add(cat["id"])
    _, _, mask_utils = _pycocotools()
    ann_ids = set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict):
            raise MaskrtError(f"{path}: annotation {i} is not an object")
        if not _is_id(ann.get("image_id")) or ann.get("image_id") not in image_ids:
            raise MaskrtError(f"{path}: annotation {ann.get('id', i)} refers to image {ann.get('image_id')!r}, "
                              "which the file does not list")
        if not _is_id(ann.get("category_id")) or ann.get("category_id") not in cat_ids:
            raise MaskrtError(f"{path}: annotation {ann.get('id', i)} has category {ann.get('category_id')!r}, "
                              "which the file does not list")
        if "id" in ann:
            if not _is_id(ann["id"]):
                raise MaskrtError(f"{path}: annotation {i} has \"id\" {ann['id']!r}; give a number")
            if ann["id"] in ann_ids:
                raise MaskrtError(f"{path}: annotation id {ann['id']} appears twice")
            ann_ids.add(ann["id"])
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)
                and bbox[2] >= 0 and bbox[3] >= 0):
            raise MaskrtError(f"{path}: annotation {ann.get('id', i)} needs \"bbox\": [x, y, width, height] (finite "
                              "numbers, width and height >= 0)")
        problem = _segmentation_problem(ann.get("segmentation"))
        if problem:
            raise MaskrtError(f"{path}: annotation {ann.get('id', i)} has a bad \"segmentation\" ({problem}); give "
                              "polygons [[x1, y1, x2, y2, x3, y3, ...], ...] or RLE {\"size\": [h, w], \"counts\": ...}")
        if "iscrowd" in ann and ann["iscrowd"] not in (0, 1):
            raise MaskrtError(f"{path}: annotation {ann.get('id', i)} has \"iscrowd\" {ann['iscrowd']!r}; use 0 or 1")
        if "area" in ann and not (_is_number(ann["area"]) and ann["area"] >= 0):
            raise MaskrtError(f"{path}: annotation {ann.get('id', i)} has \"area\" {ann['area']!r}; give a number >= 0 "
                              "or leave it out")
        ann.setdefault("iscrowd", 0)
        if "area" not in ann:
            seg = ann.get("segmentation")
            if seg and isinstance(seg, dict) and isinstance(seg.get("counts"), (str, bytes)):
                ann["area"] = float(mask_utils.area(seg))
            else:
                ann["area"] = float(bbox[2] * bbox[3])
    fresh = 1
    for ann in data["annotations"]:  # pycocotools indexes annotations by id: give the ones without one a free id
        if "id" not in ann:
            while fresh in ann_ids:
                fresh += 1
            ann["id"] = fresh
            ann_ids.add(fresh)
    return data


# -- classes and results -------------------------------------------------------------------------------------------
def _norm(name: str) -> str:
    return " ".join(str(name).replace("_", " ").split()).lower()


def _listing(names: Sequence[str], most: int = 12) -> str:
    shown = ", ".join(repr(n) for n in names[:most])
    return shown + (f" and {len(names) - most} more" if len(names) > most else "")


def category_mapping(model_class_names: Sequence[str], dataset_categories: Mapping[int, str]) -> dict:
    """Model label -> dataset category id, matched by name.

    Names match exactly, else ignoring case and treating "_" as a space. Index 0 and the names "__background__",
    "background" and "N/A" are not classes. Every dataset category must match a model class (the error names
    the ones that do not); model classes the dataset lacks are fine: their detections are left out.
    """
    exact = {}
    loose = {}
    for cat_id, name in dataset_categories.items():
        for table, key in ((exact, str(name)), (loose, _norm(name))):
            if key in table and table[key] != cat_id:
                raise MaskrtError(f"the dataset has two categories named {name!r} (ids {table[key]} and {cat_id}); "
                                  "category names must be unique to match the model's classes")
            table[key] = cat_id
    mapping = {}
    for label, name in enumerate(model_class_names):
        if label == 0 or _norm(name) in IGNORED_NAMES:
            continue
        cat_id = exact.get(str(name), loose.get(_norm(name)))
        if cat_id is not None:
            mapping[label] = cat_id
    matched = set(mapping.values())
    lacking = [f"{name} (id {cat_id})" for cat_id, name in dataset_categories.items() if cat_id not in matched]
    if lacking:
        model = [n for i, n in enumerate(model_class_names) if i > 0 and _norm(n) not in IGNORED_NAMES]
        raise MaskrtError(f"the model has no class for {len(lacking)} of the dataset's {len(dataset_categories)} "
                          f"categories: {', '.join(lacking[:12])}{' ...' if len(lacking) > 12 else ''}; the model's "
                          f"classes are {_listing(model)} (model classes absent from the dataset are fine)")
    return mapping


# -- scoring -------------------------------------------------------------------------------------------------------
def _empty_results(gt):
    COCO, _, _ = _pycocotools()
    dt = COCO()
    dt.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]),
                  "annotations": []}
    with contextlib.redirect_stdout(io.StringIO()):
        dt.createIndex()
    return dt


def score(dataset: CocoDataset, results: Sequence[dict], iou_types: Sequence[str] = IOU_TYPES) -> tuple:
    """``evaluate_results`` and pycocotools' printed summary per IoU type: (metrics, {iou_type: text})."""
    _, COCOeval, _ = _pycocotools()
    unknown = [t for t in iou_types if t not in IOU_TYPES]
    if unknown:
        raise MaskrtError(f"unknown IoU type(s) {', '.join(unknown)}; choose from {', '.join(IOU_TYPES)}")
    if "segm" in iou_types and not dataset.has_masks:
        raise MaskrtError(f"{dataset.path} has annotations without a segmentation: evaluate bbox only")
    wanted = set(dataset.image_ids)
    results = [r for r in results if r["image_id"] in wanted]
    metrics, summaries = {}, {}
    for iou_type in iou_types:
        if iou_type == "segm":  # box-less results: pycocotools then takes areas (and boxes) from the masks
            rows = [{k: v for k, v in r.items() if k != "bbox"} for r in results if r.get("segmentation")]
        else:
            rows = [dict(r) for r in results]
        text = io.StringIO()
        with contextlib.redirect_stdout(text):
            dt = dataset.coco.loadRes(rows) if rows else _empty_results(dataset.coco)
            ev = COCOeval(dataset.coco, dt, iou_type)
            ev.params.imgIds = list(dataset.image_ids)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        metrics[iou_type] = {name: (None if float(v) < 0 else float(v)) for name, v in zip(METRICS, ev.stats[:6])}
        summaries[iou_type] = text.getvalue()
    return metrics, summaries


def evaluate_results(dataset: CocoDataset, results: Sequence[dict], iou_types: Sequence[str] = IOU_TYPES) -> dict:
    """COCO metrics of ``results`` (``coco_results`` entries) against ``dataset``'s images:
    ``{"bbox": {"AP", "AP50", "AP75", "APs", "APm", "APl"}, "segm": {...}}``, fractions in [0, 1] (None for a size
    range without ground truth). No results give zeros. pycocotools' printout is captured, not printed."""
    return score(dataset, results, iou_types)[0]


# -- running a model -----------------------------------------------------------------------------------------------
@dataclass
class EvalResult:
    """What ``evaluate`` measured: metrics (see ``evaluate_results``), counts, times and what ran.

    ``num_detections`` counts the detections scored (those of classes the dataset has).
    """

    metrics: dict
    num_images: int
    num_detections: int
    seconds: float  # images through the Predictor: reading, pre-processing, inference, post-processing
    eval_seconds: float  # results encoding excluded; pycocotools' evaluate/accumulate/summarize
    model: dict = field(default_factory=dict)
    backend: str = ""
    device: str = ""
    providers: list = field(default_factory=list)
    batch: int = 1
    score_threshold: float = 0.0
    dataset: dict = field(default_factory=dict)
    summaries: dict = field(default_factory=dict)

    @property
    def images_per_second(self) -> Optional[float]:
        return self.num_images / self.seconds if self.seconds > 0 else None

    def to_dict(self) -> dict:
        return {
            "metrics": self.metrics,
            "metric_scale": "fractions in [0, 1]; null: no ground truth of that size",
            "num_images": self.num_images,
            "num_detections": self.num_detections,
            "seconds": self.seconds,
            "images_per_second": self.images_per_second,
            "eval_seconds": self.eval_seconds,
            "model": self.model,
            "backend": self.backend,
            "device": self.device,
            "providers": self.providers,
            "batch": self.batch,
            "score_threshold": self.score_threshold,
            "dataset": self.dataset,
            "pycocotools_summary": self.summaries,
        }


def evaluate(spec_or_runner, dataset: CocoDataset, *, batch: Optional[int] = None, score_threshold: float = 0.0,
             progress: Optional[Callable[[int, int], None]] = None, iou_types: Optional[Sequence[str]] = None,
             class_names: Optional[Sequence[str]] = None) -> EvalResult:
    """Run a model over ``dataset``'s images through the Predictor and score it.

    Args:
        spec_or_runner: a :class:`~maskrt.runtime.profiling.RunnerSpec` (opened at ``batch``) or a runner.
        batch: images per inference call; a fixed-batch runner uses its own; None: the model's own, else 1.
        score_threshold: drop detections below this score, on top of the model's own threshold.
        progress: called as ``progress(done, total)`` after each image.
        iou_types: default bbox and segm (bbox only when the dataset has no masks).
        class_names: the model's class names (background first) when its metadata's names are not the ones to
            match the dataset's categories with.
    """
    from maskrt.backends.select import RunnerSpec
    from maskrt.inference import Predictor

    if batch is not None and batch < 1:
        raise MaskrtError(f"--batch must be >= 1, got {batch}")
    if not 0.0 <= score_threshold <= 1.0:
        raise MaskrtError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    iou_types = tuple(iou_types) if iou_types is not None else dataset.iou_types()
    if isinstance(spec_or_runner, RunnerSpec):
        spec = spec_or_runner
        spec.check()
        model_info = spec.model_info()
        runner = spec.open(batch)
    else:
        spec, runner = None, spec_or_runner
        model_info = {"name": getattr(runner, "name", type(runner).__name__)}
    predictor = Predictor(runner, score_threshold=score_threshold, batch=batch)
    names = list(class_names) if class_names is not None else list(predictor.meta.class_names)
    mapping = category_mapping(names, dataset.categories)

    results, total = [], dataset.num_images
    t0 = time.perf_counter()
    with predictor:
        for k, det in enumerate(predictor.predict_iter(dataset.files)):
            results.extend(coco_results(det, dataset.image_ids[k], mapping))
            if progress is not None:
                progress(k + 1, total)
        device, providers = runner.device, runner.providers
    seconds = time.perf_counter() - t0
    t1 = time.perf_counter()
    metrics, summaries = score(dataset, results, iou_types)
    eval_seconds = time.perf_counter() - t1
    return EvalResult(metrics=metrics, num_images=total, num_detections=len(results), seconds=seconds,
                      eval_seconds=eval_seconds, model=model_info,
                      backend=spec.resolved_backend() if spec else getattr(runner, "backend", ""),
                      device=device, providers=providers, batch=predictor.batch,
                      score_threshold=score_threshold, dataset=dataset.info(), summaries=summaries)


def add_accuracy(report, specs, dataset: CocoDataset, log: Callable[[str], None] = lambda line: None) -> None:
    """Fill ``run.accuracy`` (bbox and segm AP) of every run of a bench report that ran, evaluating its spec on
    ``dataset`` with the run's batch, so the numbers are exactly ``maskrt eval``'s. A run that cannot be
    evaluated gets a note instead."""
    for run, spec in zip(report.runs, specs):
        if run.status not in ("ok", "interrupted"):
            continue
        log(f"evaluating {run.label} on {dataset.num_images} images ...")
        try:
            result = evaluate(spec, dataset, batch=run.batch)
        except MaskrtError as e:
            run.notes.append(f"accuracy not measured: {e}")
            log(f"{run.label}: accuracy not measured: {e}")
            continue
        run.accuracy = {"bbox_ap": (result.metrics.get("bbox") or {}).get("AP"),
                        "segm_ap": (result.metrics.get("segm") or {}).get("AP"),
                        "metrics": result.metrics, "dataset": os.path.abspath(dataset.path),
                        "num_images": result.num_images}


EVAL_SCHEMA = "maskrt.eval-report"
EVAL_SCHEMA_VERSION = 1


def write_eval_json(result: EvalResult, path: str, extra: Optional[dict] = None) -> str:
    """``result`` as JSON (schema ``maskrt.eval-report`` version 1) with ``extra`` keys, written atomically."""
    data = {"schema": EVAL_SCHEMA, "schema_version": EVAL_SCHEMA_VERSION, **(extra or {}), **result.to_dict()}
    return atomic_write(path, json.dumps(data, indent=2))
