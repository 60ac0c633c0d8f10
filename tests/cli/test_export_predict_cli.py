"""maskrt export and maskrt predict from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.cli.test_cli import run


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    path = folder / "m.onnx"
    names = folder / "names.txt"
    names.write_text("circle\nsquare\n")
    r = run("export", "--arch", "maskrcnn_resnet18_fpn", "--random-weights", "--num-classes", "3", "--input-size", "96x128",
            "--class-names", str(names), "--verify", "-o", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    return folder, path, r.stdout


def test_export_reports_and_verifies(exported):
    folder, path, out = exported
    assert os.path.isfile(path)
    assert f"wrote {path}" in out and "MiB" in out
    assert "result: PASS" in out and "maskrt predict" in out
    assert [f for f in os.listdir(folder) if f.endswith(".tmp")] == []


def test_predict_writes_pngs_and_coco_json(exported, tmp_path):
    from PIL import Image

    from maskrt.data.images import synthetic_image

    folder, path, _ = exported
    good = tmp_path / "good.png"
    Image.fromarray(synthetic_image(90, 120, 1).permute(1, 2, 0).numpy()).convert("P").save(good)  # palette image
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    r = run("predict", str(path), str(good), str(bad), "--score-threshold", "0", "--out", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "skipped: cannot read image" in r.stderr and "1 of 2 image(s) could not be read" in r.stderr
    assert os.path.isfile(out / "good.png")
    results = json.loads((out / "predictions.json").read_text())
    assert results and {"bbox", "score", "segmentation", "category_id", "category_name"} <= set(results[0])
    assert results[0]["category_name"] in ("circle", "square")
    from pycocotools import mask as mask_utils

    m = mask_utils.decode(results[0]["segmentation"])
    assert m.shape == (90, 120)


def test_predict_says_once_in_one_line_that_images_were_shrunk(exported, tmp_path):
    from PIL import Image

    from maskrt.data.images import synthetic_image

    folder, path, _ = exported
    files = []
    for i in range(2):  # portrait photos do not fit the 96x128 canvas at the model's resize rule
        files.append(tmp_path / f"portrait{i}.png")
        Image.fromarray(synthetic_image(200, 96, i).permute(1, 2, 0).numpy()).save(files[-1])
    r = run("predict", str(path), *map(str, files), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "shrunk" in line]
    assert len(notes) == 1 and notes[0].startswith("note: ") and "portrait0.png (200x96)" in notes[0], r.stderr
    assert "--dynamic-size" in notes[0] and "Warning" not in r.stderr


@pytest.mark.parametrize("args,fragment", [
    (["export", "--arch", "maskrcnn_resnet18_fpn", "--random-weights", "--opset", "11", "-o", "x.onnx"], "RoiAlign"),
    (["export", "--arch", "maskrcnn_resnet18_fpn", "-o", "x.onnx"], "maskrcnn_resnet18_fpn ships no weights: pass --weights FILE (a checkpoint) or --random-weights"),
    (["export", "--arch", "maskrcnn_resnet18_fpn", "--random-weights", "--input-size", "big", "-o", "x.onnx"], "HxW"),
    (["export", "--arch", "maskrcnn_resnet18_fpn", "--random-weights", "-o", "/nonexistent/dir/x.onnx"], "does not exist"),
])
def test_export_bad_input(args, fragment, tmp_path):
    r = subprocess.run([sys.executable, "-m", "maskrt", *args], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stderr
    assert fragment in r.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_predict_bad_model_and_output(exported, tmp_path):
    _, path, _ = exported
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    image = tmp_path / "x.png"
    image.write_bytes(b"an image that is never read: the model or the folder is refused first")
    r = run("predict", str(tmp_path / "junk.onnx"), str(image), "--out", str(tmp_path / "o"))
    assert r.returncode == 2 and "not a readable ONNX" in r.stderr and "Traceback" not in r.stderr
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = run("predict", str(path), str(image), "--out", str(blocker / "sub"))
    assert r.returncode == 2 and "cannot write to output folder" in r.stderr and "Traceback" not in r.stderr
