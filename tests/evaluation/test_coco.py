"""COCO evaluation: dataset checks, class matching by name, results and metrics (ground truth fed back scores 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from maskrt.core.errors import MaskrtError
from maskrt.evaluation.coco import (
    EvalResult,
    category_mapping,
    coco_results,
    evaluate,
    evaluate_results,
    load_coco,
)
from maskrt.inference import Detections

MODEL_NAMES = ("__background__", "class_1", "class_2")  # the tiny test models' default class names
# (height, width) and shapes per image: (kind, category name, y0, x0, y1, x1)
IMAGES = [
    ((64, 96), [("rect", "class_1", 4, 6, 30, 40), ("ellipse", "class_2", 20, 50, 60, 90),
                ("rect", "class_2", 40, 8, 50, 20)]),
    ((80, 60), [("ellipse", "class_1", 10, 5, 70, 55), ("rect", "class_1", 2, 40, 12, 58)]),
    ((160, 240), [("ellipse", "class_2", 10, 10, 150, 200), ("rect", "class_1", 120, 200, 150, 236),
                  ("rect", "class_2", 5, 205, 15, 215), ("ellipse", "class_1", 100, 20, 130, 60)]),
]


def shape_mask(kind, size, y0, x0, y1, x1) -> np.ndarray:
    h, w = size
    yy, xx = np.mgrid[0:h, 0:w]
    if kind == "rect":
        return (yy >= y0) & (yy < y1) & (xx >= x0) & (xx < x1)
    cy, cx, ry, rx = (y0 + y1 - 1) / 2, (x0 + x1 - 1) / 2, (y1 - y0) / 2, (x1 - x0) / 2
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0


def make_dataset(folder, categories=("class_1", "class_2"), images=IMAGES, extra_category=None):
    """A COCO instances file and PNG images in ``folder``; returns (annotation path, images dir, ground truth),
    the ground truth as {image_id: [(category name, bool mask)]}."""
    from PIL import Image
    from pycocotools import mask as mask_utils

    images_dir = folder / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    cats = [{"id": 10 + i, "name": n} for i, n in enumerate(categories)]
    if extra_category:
        cats.append({"id": 99, "name": extra_category})
    cat_id = {c["name"]: c["id"] for c in cats}
    rng = np.random.default_rng(0)
    data = {"images": [], "annotations": [], "categories": cats}
    truth = {}
    for k, (size, shapes) in enumerate(images):
        image_id = 100 + k
        pixels = rng.integers(0, 60, size=(*size, 3), dtype=np.uint8)
        truth[image_id] = []
        for kind, name, *box in shapes:
            m = shape_mask(kind, size, *box)
            pixels[m] = rng.integers(120, 255, size=3, dtype=np.uint8)
            rle = mask_utils.encode(np.asfortranarray(m.astype(np.uint8)))
            data["annotations"].append({
                "id": len(data["annotations"]) + 1, "image_id": image_id, "category_id": cat_id[name],
                "segmentation": {"size": list(rle["size"]), "counts": rle["counts"].decode("ascii")},
                "bbox": [float(v) for v in mask_utils.toBbox(rle)], "area": float(m.sum()), "iscrowd": 0})
            truth[image_id].append((name, m))
        file_name = f"img_{k}.png"
        Image.fromarray(pixels).save(images_dir / file_name)
        data["images"].append({"id": image_id, "file_name": file_name, "height": size[0], "width": size[1]})
    ann = folder / "instances.json"
    ann.write_text(json.dumps(data))
    return ann, images_dir, truth


def as_detections(items, size, names=MODEL_NAMES) -> Detections:
    """Detections with score 1 for (category name, mask) pairs: boxes are the masks' extents."""
    boxes, labels, masks = [], [], []
    for name, m in items:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
        labels.append(names.index(name))
        masks.append(m.astype(np.float32))
    n = len(items)
    full = torch.from_numpy(np.stack(masks)) if n else torch.zeros(0, *size)
    return Detections(torch.tensor(boxes, dtype=torch.float32).reshape(n, 4), torch.ones(n),
                      torch.tensor(labels, dtype=torch.int64), [names[i] for i in labels], torch.zeros(n, 28, 28),
                      tuple(size), masks=full)


@pytest.fixture(scope="module")
def coco(tmp_path_factory):
    folder = tmp_path_factory.mktemp("coco")
    ann, images_dir, truth = make_dataset(folder)
    return load_coco(str(ann), str(images_dir)), truth


def results_for(dataset, truth, edit=None):
    mapping = category_mapping(MODEL_NAMES, dataset.categories)
    results = []
    for image_id, (size, _) in zip(dataset.image_ids, IMAGES):
        items = list(truth[image_id])
        if edit:
            items = edit(image_id, items)
        results.extend(coco_results(as_detections(items, size), image_id, mapping))
    return results


def test_perfect_predictions_score_one(coco):
    dataset, truth = coco
    metrics = evaluate_results(dataset, results_for(dataset, truth))
    assert set(metrics) == {"bbox", "segm"}
    for iou_type in ("bbox", "segm"):
        m = metrics[iou_type]
        assert set(m) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        for name in ("AP", "AP50", "AP75", "APs", "APm", "APl"):
            assert m[name] == pytest.approx(1.0), (iou_type, name, m)


def test_a_shifted_box_lowers_bbox_ap_only(coco):
    dataset, truth = coco
    results = results_for(dataset, truth)
    assert results[0]["bbox"][2] == 34.0
    results[0]["bbox"][0] += 20  # 34-px-wide box moved 20 px: IoU < 0.5; its mask stays exact
    metrics = evaluate_results(dataset, results)
    assert metrics["bbox"]["AP"] < 0.95 and metrics["bbox"]["AP50"] < 1.0
    assert metrics["segm"]["AP"] == pytest.approx(1.0)  # masks are scored on their own


def test_a_shifted_mask_lowers_segm_ap(coco):
    dataset, truth = coco
    first = dataset.image_ids[0]

    def shift(image_id, items):
        if image_id != first:
            return items
        name, m = items[1]
        return [items[0], (name, np.roll(m, 25, axis=0))] + items[2:]

    metrics = evaluate_results(dataset, results_for(dataset, truth, shift))
    assert metrics["segm"]["AP"] < 0.95 and metrics["bbox"]["AP"] < 0.95


def test_a_wrong_category_lowers_ap(coco):
    dataset, truth = coco
    last = dataset.image_ids[-1]

    def relabel(image_id, items):
        if image_id != last:
            return items
        name, m = items[0]
        return [("class_1" if name == "class_2" else "class_2", m)] + items[1:]

    metrics = evaluate_results(dataset, results_for(dataset, truth, relabel))
    for iou_type in ("bbox", "segm"):
        assert metrics[iou_type]["AP"] < 0.95
        assert metrics[iou_type]["APl"] == pytest.approx(0.0)  # the one large object went to the wrong class


def test_no_results_give_zeros(coco):
    dataset, _ = coco
    metrics = evaluate_results(dataset, [])
    assert metrics["bbox"]["AP"] == 0.0 and metrics["segm"]["AP50"] == 0.0
    assert metrics["bbox"]["APs"] == 0.0 and metrics["segm"]["APl"] == 0.0


def test_limit_and_size_ranges_without_objects(coco, tmp_path):
    dataset, truth = coco
    one = load_coco(dataset.path, dataset.images_dir, limit=1)
    assert one.image_ids == dataset.image_ids[:1] and one.num_listed == 3 and len(one.files) == 1
    # perfect on the first image only: 1.0 there, and the other images' objects would be misses without --limit
    first = dataset.image_ids[0]
    results = [r for r in results_for(dataset, truth) if r["image_id"] == first]
    metrics = evaluate_results(one, results)
    assert metrics["bbox"]["AP"] == pytest.approx(1.0) and metrics["segm"]["AP"] == pytest.approx(1.0)
    assert metrics["bbox"]["APl"] is None and metrics["segm"]["APl"] is None  # no large object in a 64x96 image
    assert evaluate_results(dataset, results)["bbox"]["AP"] < 0.7


def test_coco_results_entries(coco):
    from pycocotools import mask as mask_utils

    dataset, truth = coco
    image_id = dataset.image_ids[0]
    det = as_detections(truth[image_id], IMAGES[0][0])
    det.masks[0] = det.masks[0] * 0.6 + (1 - det.masks[0]) * 0.3  # probabilities: 0.6 inside, 0.3 outside
    out = coco_results(det, image_id, {1: 10})  # class_2 is not in the mapping: left out
    assert [r["category_id"] for r in out] == [10]
    r = out[0]
    assert r["image_id"] == image_id and r["score"] == 1.0
    assert r["bbox"] == [6.0, 4.0, 34.0, 26.0]
    decoded = mask_utils.decode(r["segmentation"]).astype(bool)
    assert (decoded == truth[image_id][0][1]).all()
    json.dumps(out)
    assert coco_results(det, image_id, {}) == []


def test_category_mapping_by_name():
    cats = {1: "person", 3: "Traffic Light", 7: "dog"}
    names = ["__background__", "person", "N/A", "traffic_light", "dog", "cat"]
    assert category_mapping(names, cats) == {1: 1, 3: 3, 4: 7}  # "cat" absent from the dataset is fine
    with pytest.raises(MaskrtError) as e:
        category_mapping(["__background__", "person", "cat"], cats)
    msg = str(e.value)
    assert "Traffic Light (id 3)" in msg and "dog (id 7)" in msg and "person (id" not in msg
    assert "'cat'" in msg and "absent from the dataset are fine" in msg
    with pytest.raises(MaskrtError, match="two categories named"):
        category_mapping(names, {1: "dog", 2: "Dog"})
    with pytest.raises(MaskrtError, match="no class for 1"):  # the background is not a class
        category_mapping(["background", "dog"], {1: "background", 2: "dog"})


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_load_coco_errors(coco, tmp_path):
    dataset, _ = coco
    images = dataset.images_dir
    good = json.loads(open(dataset.path).read())
    with pytest.raises(MaskrtError, match="annotation file not found"):
        load_coco(str(tmp_path / "none.json"), images)
    with pytest.raises(MaskrtError, match=r"is not valid JSON \(line 1"):
        load_coco(_write(tmp_path / "bad.json", "{images: ["), images)
    with pytest.raises(MaskrtError, match="not a COCO instances file"):
        load_coco(_write(tmp_path / "list.json", "[1, 2]"), images)
    with pytest.raises(MaskrtError, match="not a COCO instances file"):
        load_coco(_write(tmp_path / "nocats.json", json.dumps({"images": [], "annotations": []})), images)
    with pytest.raises(MaskrtError, match="lists no images"):
        load_coco(_write(tmp_path / "empty.json", json.dumps({**good, "images": [], "annotations": []})), images)
    bad_ann = {**good, "annotations": good["annotations"] + [{**good["annotations"][0], "image_id": 5}]}
    with pytest.raises(MaskrtError, match="refers to image 5"):
        load_coco(_write(tmp_path / "ann.json", json.dumps(bad_ann)), images)
    missing = {**good, "images": good["images"] + [{"id": 7, "file_name": "gone.jpg"}, {"id": 8, "file_name": "x.jpg"}]}
    with pytest.raises(MaskrtError, match=r"2 of the 5 images .* are not in .* \(first: gone.jpg\)"):
        load_coco(_write(tmp_path / "missing.json", json.dumps(missing)), images)
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(MaskrtError, match="holds no images"):
        load_coco(dataset.path, str(tmp_path / "empty_dir"))
    with pytest.raises(MaskrtError, match="is not a folder"):
        load_coco(dataset.path, str(tmp_path / "nope"))
    with pytest.raises(MaskrtError, match="--limit must be >= 1"):
        load_coco(dataset.path, images, limit=0)


def test_fills_area_and_iscrowd_and_bbox_only_datasets(coco, tmp_path):
    dataset, truth = coco
    data = json.loads(open(dataset.path).read())
    for a in data["annotations"]:
        del a["area"], a["iscrowd"], a["segmentation"]
    plain = load_coco(_write(tmp_path / "boxes.json", json.dumps(data)), dataset.images_dir)
    assert not plain.has_masks and plain.iou_types() == ("bbox",)
    metrics = evaluate_results(plain, results_for(dataset, truth), plain.iou_types())
    assert list(metrics) == ["bbox"] and metrics["bbox"]["AP"] == pytest.approx(1.0)
    with pytest.raises(MaskrtError, match="without a segmentation"):
        evaluate_results(plain, [], ("bbox", "segm"))


def test_evaluate_runs_a_model(coco):
    """A tiny random-weight model through the runner: shapes and ranges only (its AP is about 0)."""
    from maskrt.backends.torch.runner import TorchRunner
    from tests.profiling.perf_helpers import TINY_SIZE, tiny_model

    dataset, _ = coco
    seen = []
    result = evaluate(TorchRunner(tiny_model(), TINY_SIZE, None), dataset, batch=2,
                      progress=lambda done, total: seen.append((done, total)))
    assert isinstance(result, EvalResult)
    assert seen == [(1, 3), (2, 3), (3, 3)]
    assert result.num_images == 3 and result.num_detections > 0 and result.batch == 2
    d = result.to_dict()
    json.dumps(d)
    for iou_type in ("bbox", "segm"):
        for v in d["metrics"][iou_type].values():
            assert v is None or 0.0 <= v <= 1.0
    assert d["dataset"]["num_images"] == 3 and len(d["dataset"]["sha256"]) == 64
    assert "Average Precision" in d["pycocotools_summary"]["bbox"]
    # a higher score threshold keeps fewer detections
    fewer = evaluate(TorchRunner(tiny_model(), TINY_SIZE, 1), dataset, score_threshold=0.9, iou_types=("bbox",))
    assert fewer.num_detections < result.num_detections and list(fewer.metrics) == ["bbox"]


def test_evaluate_refuses_unmatched_classes(coco):
    from maskrt.backends.torch.runner import TorchRunner
    from tests.profiling.perf_helpers import TINY_SIZE, tiny_model

    dataset, _ = coco
    with pytest.raises(MaskrtError, match="no class for 2 of the dataset's 2 categories"):
        evaluate(TorchRunner(tiny_model(), TINY_SIZE, 1, class_names=["bg", "cat", "dog"]), dataset)
    with pytest.raises(MaskrtError, match="--batch must be >= 1"):
        evaluate(TorchRunner(tiny_model(), TINY_SIZE, 1), dataset, batch=0)


def test_crop_rle_equals_pycocotools_on_the_full_mask():
    """RLE counted over a crop's columns only is pycocotools' own encoding of the whole image, at every edge."""
    from pycocotools import mask as mask_utils

    from maskrt.data.coco import crop_rle

    rng = np.random.default_rng(0)
    height, width = 37, 53
    cases = [(0, 0, 5, 7), (30, 46, 7, 7), (0, 40, 37, 13), (10, 0, 27, 1), (36, 52, 1, 1), (5, 5, 0, 0)]
    cases += [(int(rng.integers(0, 30)), int(rng.integers(0, 45)), int(rng.integers(1, 8)), int(rng.integers(1, 9)))
              for _ in range(40)]
    for top, left, h, w in cases:
        for fill in ("random", "ones", "zeros"):
            crop = {"random": rng.random((h, w)) > 0.5, "ones": np.ones((h, w), bool), "zeros": np.zeros((h, w), bool)}[fill]
            full = np.zeros((height, width), np.uint8)
            full[top:top + h, left:left + w] = crop
            expected = mask_utils.encode(np.asfortranarray(full))
            got = crop_rle(crop, top, left, height, width)
            assert got["size"] == [height, width]
            assert got["counts"] == expected["counts"].decode("ascii"), (top, left, h, w, fill)
            assert (mask_utils.decode(got) == full).all()


def test_coco_results_from_compact_masks_equal_the_pasted_masks():
    from pycocotools import mask as mask_utils

    g = torch.Generator().manual_seed(3)
    boxes = torch.tensor([[0.0, 0.0, 20.0, 15.0], [50.5, 30.2, 79.9, 59.9], [-10.0, 40.0, 12.0, 70.0],
                          [70.0, 5.0, 130.0, 20.0]])
    probs = torch.rand(4, 28, 28, generator=g)
    det = Detections(boxes, torch.ones(4), torch.ones(4, dtype=torch.int64), ["a"] * 4, probs, (60, 80))
    out = coco_results(det, 1)
    assert not det.has_full_masks  # the RLE came from the per-box crops
    for r, full in zip(out, det.masks):
        assert (mask_utils.decode(r["segmentation"]).astype(bool) == (full > 0.5).numpy()).all()
