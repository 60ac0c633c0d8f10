"""Prediction over image files into a folder (what ``maskrt predict`` does): drawings and COCO results.

:func:`collect_images` turns the user's arguments (files, folders, glob patterns) into image paths;
:func:`output_names` gives every image a drawing name that never collides with another's and never names an
input; :func:`predict_to_folder` runs a :class:`~maskrt.inference.Predictor` over them and writes

* one PNG per image with masks, boxes, labels and scores drawn (written atomically);
* ``predictions.json``: COCO results (``image_id`` is the image's position in the input order, ``file_name``
  its path as given), RLE masks;
* ``summary.json``: the images done (source, drawing, detection count), the ones that failed (with the reason),
  and ``complete``: false when the run was interrupted (Ctrl-C), whose results hold the images done so far.

An image that cannot be read is reported and skipped; when no image could be read nothing is written.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from dataclasses import dataclass, field
from typing import Callable, Optional, Sequence

from maskrt.core.errors import MaskrtError, one_line
from maskrt.core.fileio import atomic_output, atomic_write, ensure_writable_folder, same_file
from maskrt.data.images import IMAGE_EXTENSIONS

PREDICTIONS = "predictions.json"
SUMMARY = "summary.json"


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def collect_images(items: Sequence[str]) -> list[tuple[str, str]]:
    """(path, base folder) for every image the arguments name, in order, each once.

    A file is taken as it is (its base folder is its own folder); a folder contributes its image files, sorted,
    searched recursively (base: the folder); a pattern with ``*``, ``?`` or ``[`` that is not an existing path is
    expanded with :func:`glob.glob` (``**`` recursive). A name that is none of these is kept, so that it is
    reported as unreadable with the others; when no name exists at all, MaskrtError at once.
    """
    out, seen = [], set()

    def add(path: str, base: str) -> None:
        key = os.path.abspath(path)
        if key not in seen:
            seen.add(key)
            out.append((path, base))

    for item in items:
        item = os.fspath(item)
        if os.path.isdir(item):
            found = []
            for folder, dirs, files in os.walk(item):
                dirs.sort()
                found += [os.path.join(folder, f) for f in sorted(files) if _is_image_name(f)]
            if not found:
                raise MaskrtError(f"folder {item} holds no images ({', '.join(IMAGE_EXTENSIONS)})")
            for path in found:
                add(path, item)
        elif not os.path.exists(item) and any(c in item for c in "*?["):
            matches = sorted(p for p in glob.glob(item, recursive=True) if os.path.isfile(p))
            if not matches:
                raise MaskrtError(f"no file matches {item!r}")
            for path in matches:
                add(path, os.path.dirname(path))
        else:
            add(item, os.path.dirname(item))
    if not out:
        raise MaskrtError("no images given")
    missing = [path for path, _ in out if not os.path.exists(path)]
    if len(missing) == len(out):  # said before any model is loaded; with some found, the missing are skipped
        raise MaskrtError(f"image not found: {missing[0]}" if len(missing) == 1 else
                          f"none of the {len(missing)} images exist (first: {missing[0]})")
    return out


def output_names(images: Sequence[tuple[str, str]], out_dir: str) -> list[str]:
    """A drawing path in ``out_dir`` for each image: its name (relative to its base folder) with a .png suffix,
    with the original extension added where two images would share a name (one.jpg, one.png ->
    one_jpg.png, one_png.png) and a ``_pred`` suffix where the name would be one of the inputs."""
    stems = []
    for path, base in images:
        rel = os.path.relpath(path, base) if base else os.path.basename(path)
        if rel.startswith(".."):
            rel = os.path.basename(path)
        stems.append(os.path.splitext(rel)[0])
    counts: dict = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    names, used = [], set()
    inputs = [p for p, _ in images]
    for (path, _), stem in zip(images, stems):
        name = stem
        if counts[stem] > 1:
            name = f"{stem}_{os.path.splitext(path)[1].lstrip('.').lower() or 'image'}"
        candidate = os.path.join(out_dir, name + ".png")
        k = 1
        while candidate in used or any(os.path.exists(p) and same_file(candidate, p) for p in inputs):
            candidate = os.path.join(out_dir, f"{name}_pred{'' if k == 1 else k}.png")
            k += 1
        used.add(candidate)
        names.append(candidate)
    return names


@dataclass
class FolderRun:
    """What :func:`predict_to_folder` did."""

    out_dir: str
    done: list = field(default_factory=list)  # {"source", "drawing", "detections"}
    failed: list = field(default_factory=list)  # {"source", "error"}
    results: list = field(default_factory=list)  # COCO results
    complete: bool = True

    @property
    def predictions_path(self) -> str:
        return os.path.join(self.out_dir, PREDICTIONS)

    def summary(self) -> dict:
        return {"schema": "maskrt.predictions", "schema_version": 1, "complete": self.complete,
                "images": self.done, "failed": self.failed, "detections": len(self.results)}


def predict_to_folder(predictor, items: Sequence[str], out_dir: str, draw: bool = True,
                      on_image: Optional[Callable[[str, Optional[str], object], None]] = None) -> FolderRun:
    """Predict every image the arguments name (see :func:`collect_images`) into ``out_dir``.

    ``on_image(source, drawing_path, detections_or_error)`` is called after each image (the drawing path is None
    for a failure). On Ctrl-C the results of the images done are written, marked incomplete, and the
    KeyboardInterrupt goes on. MaskrtError when no image could be read (nothing is written then).
    """
    from maskrt.data.coco import coco_results
    from maskrt.data.draw import draw_detections
    from maskrt.inference.predictor import ImageError
    images = collect_images(items)
    created = not os.path.isdir(out_dir)
    ensure_writable_folder(out_dir)
    drawings = output_names(images, out_dir)
    run = FolderRun(out_dir)
    paths = [path for path, _ in images]
    outcomes = predictor.predict_iter(paths, errors="yield", with_images=True)  # reads ahead on a thread
    try:
        for image_id, (path, drawing, outcome) in enumerate(zip(paths, drawings, outcomes)):
            if isinstance(outcome, ImageError):
                run.failed.append({"source": path, "error": str(outcome.error)})
                if on_image is not None:
                    on_image(path, None, outcome.error)
                continue
            det, tensor = outcome
            det = det.cpu()
            if draw:
                os.makedirs(os.path.dirname(drawing), exist_ok=True)
                with atomic_output(drawing) as tmp:
                    draw_detections(tensor, det).save(tmp, format="PNG")
            run.results.extend(coco_results(det, image_id, file_name=path))
            run.done.append({"source": path, "drawing": drawing if draw else None, "detections": len(det)})
            if on_image is not None:
                on_image(path, drawing if draw else None, det)
    except KeyboardInterrupt:
        run.complete = False
        _write(run)
        raise
    finally:
        outcomes.close()  # stops the reading thread
    if not run.done:
        if created:  # leave no trace of a run that wrote nothing
            with contextlib.suppress(OSError):
                os.rmdir(out_dir)
        first = run.failed[0]["error"] if run.failed else "no images"
        raise MaskrtError(f"none of the {len(images)} image(s) could be read (first: {one_line(MaskrtError(first))}); "
                          "nothing was written")
    _write(run)
    return run


def _write(run: FolderRun) -> None:
    if not run.done:
        return
    atomic_write(run.predictions_path, json.dumps(run.results))
    atomic_write(os.path.join(run.out_dir, SUMMARY), json.dumps(run.summary(), indent=1) + "\n")
