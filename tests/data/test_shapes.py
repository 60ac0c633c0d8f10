"""The synthetic shapes dataset: determinism, valid instances, visible contrast, COCO output."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from maskrt.core.errors import MaskrtError
from maskrt.data.shapes import CLASSES, IMAGE_SIZES, coco_dict, make_scene, write_coco

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def scenes():
    return [make_scene(0, i) for i in range(200)]


def _digest(scene) -> str:
    h = hashlib.sha256(scene.image.tobytes())
    for inst in scene.instances:
        h.update(bytes([inst.category_id]))
        h.update(np.packbits(inst.mask).tobytes())
        h.update(repr((inst.bbox, inst.area)).encode())
    return h.hexdigest()


def _dilate(mask: np.ndarray, r: int) -> np.ndarray:
    padded = np.pad(mask, r)
    h, w = mask.shape
    out = np.zeros_like(mask)
    for dy in range(2 * r + 1):
        for dx in range(2 * r + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def test_same_seed_and_index_give_identical_scenes():
    a, b = make_scene(7, 3), make_scene(7, 3)
    assert a.image.dtype == np.uint8 and a.image.ndim == 3 and a.image.shape[2] == 3
    assert np.array_equal(a.image, b.image)
    assert len(a.instances) == len(b.instances) >= 1
    for x, y in zip(a.instances, b.instances):
        assert x.category_id == y.category_id and x.bbox == y.bbox and x.area == y.area
        assert np.array_equal(x.mask, y.mask)


def test_identical_bytes_in_another_process():
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "from tests.data.test_shapes import _digest\n"
        "from maskrt.data.shapes import make_scene\n"
        "print(_digest(make_scene(11, 42)))"
    )
    out = subprocess.run([sys.executable, "-c", code, REPO], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == _digest(make_scene(11, 42))


def test_different_seeds_and_indices_differ():
    for i in range(5):
        assert _digest(make_scene(0, i)) != _digest(make_scene(1, i))
    assert len({_digest(make_scene(0, i)) for i in range(10)}) == 10


def test_scene_depends_only_on_seed_and_index():
    first = _digest(make_scene(3, 5))
    for i in range(5):
        make_scene(3, i)
    assert _digest(make_scene(3, 5)) == first


def test_instances_are_valid(scenes):
    for scene in scenes:
        h, w = scene.image.shape[:2]
        assert (h, w) in IMAGE_SIZES
        assert 1 <= len(scene.instances) <= 8
        union = np.zeros((h, w), dtype=np.int32)
        for inst in scene.instances:
            assert 1 <= inst.category_id <= len(CLASSES)
            assert inst.mask.dtype == np.bool_ and inst.mask.shape == (h, w)
            assert inst.area == int(inst.mask.sum()) >= 30
            ys, xs = np.nonzero(inst.mask)
            x0, y0 = xs.min(), ys.min()
            assert inst.bbox == (float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1))
            union += inst.mask
        assert union.max() == 1  # visible parts never overlap


def test_every_class_and_image_size_appears(scenes):
    per_class = np.bincount([i.category_id for s in scenes for i in s.instances], minlength=len(CLASSES) + 1)
    assert per_class[0] == 0 and (per_class[1:] >= 100).all(), per_class
    sizes = {s.image.shape[:2] for s in scenes}
    assert sizes == set(IMAGE_SIZES)
    longest = [max(i.bbox[2], i.bbox[3]) for s in scenes for i in s.instances]
    assert min(longest) < 16 and max(longest) > 120  # tiny to large
    assert any(len(s.instances) >= 6 for s in scenes)


def test_shapes_contrast_with_what_surrounds_them(scenes):
    # mean colour inside each shape vs. the background ring just outside it (other shapes excluded)
    distances = []
    for scene in scenes[:80]:
        image = scene.image.astype(np.float64)
        covered = np.zeros(image.shape[:2], dtype=bool)
        for inst in scene.instances:
            covered |= inst.mask
        for inst in scene.instances:
            if inst.area < 60:
                continue
            inner = ~_dilate(~inst.mask, 1)
            near = _dilate(inst.mask, 1)
            ring = _dilate(inst.mask, 3) & ~near & ~covered
            if inner.sum() < 20 or ring.sum() < 20:
                continue
            distances.append(np.linalg.norm(image[inner].mean(0) - image[ring].mean(0)))
    assert len(distances) > 100
    assert min(distances) > 40, sorted(distances)[:5]


def test_bad_seed_or_index():
    with pytest.raises(MaskrtError):
        make_scene(-1, 0)
    with pytest.raises(MaskrtError):
        make_scene(0, -1)


def test_write_coco_loads_in_pycocotools(tmp_path):
    from PIL import Image
    from pycocotools.coco import COCO

    path = write_coco(str(tmp_path / "ds"), 6, 2, start=3)
    assert path == str(tmp_path / "ds" / "annotations.json")
    assert sorted(os.listdir(tmp_path / "ds")) == ["annotations.json", "images"]
    coco = COCO(path)
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == list(CLASSES)
    assert coco.getCatIds() == [1, 2, 3, 4]
    assert sorted(coco.getImgIds()) == [4, 5, 6, 7, 8, 9]
    checked = 0
    for index in range(3, 9):
        info = coco.loadImgs(index + 1)[0]
        assert info["file_name"] == f"2_{index:06d}.png"
        scene = make_scene(2, index)
        with Image.open(tmp_path / "ds" / "images" / info["file_name"]) as im:
            assert (im.height, im.width) == (info["height"], info["width"]) == scene.image.shape[:2]
            assert np.array_equal(np.asarray(im.convert("RGB")), scene.image)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[index + 1]))
        assert len(anns) == len(scene.instances)
        for ann, inst in zip(anns, scene.instances):
            assert ann["category_id"] == inst.category_id and ann["iscrowd"] == 0
            assert ann["area"] == inst.area and tuple(ann["bbox"]) == inst.bbox
            assert isinstance(ann["segmentation"]["counts"], str)
            assert ann["segmentation"]["size"] == list(scene.image.shape[:2])
            assert np.array_equal(coco.annToMask(ann).astype(bool), inst.mask)
            checked += 1
    assert checked >= 6
    ids = [a["id"] for a in json.load(open(path))["annotations"]]
    assert len(set(ids)) == len(ids)


def test_coco_dict_in_memory():
    from pycocotools.coco import COCO

    scenes = [make_scene(1, 0), make_scene(1, 1)]
    coco = COCO()
    coco.dataset = coco_dict(scenes, ["a.png", "b.png"])
    coco.createIndex()
    assert coco.getImgIds() == [1, 2]
    ann = coco.loadAnns(coco.getAnnIds(imgIds=[2]))[0]
    assert np.array_equal(coco.annToMask(ann).astype(bool), scenes[1].instances[0].mask)
    with pytest.raises(MaskrtError):
        coco_dict(scenes, ["a.png"])


def test_write_coco_bad_output(tmp_path):
    with pytest.raises(MaskrtError, match="count"):
        write_coco(str(tmp_path / "a"), 0, 0)
    assert not (tmp_path / "a").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(MaskrtError, match="existing file"):
        write_coco(str(tmp_path / "file"), 1, 0)
    with pytest.raises(MaskrtError, match="cannot write"):
        write_coco(str(tmp_path / "file" / "sub"), 1, 0)
    assert (tmp_path / "file").read_text() == "x"
