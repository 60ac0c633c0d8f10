"""Every bad input, one clean answer: a table of bad inputs for every verb (issue 13).

Each case is an argv (``{name}`` fields filled from the fixture folder), the exit status, and a piece of the
one-line message. For every case the suite checks that

* the exit status is the expected one (2 for a user error) and no traceback was printed;
* the last line is ``error: ...`` and holds the expected text;
* no file was written: the case's outputs do not exist, and no temporary file was left anywhere;
* no input changed (every fixture file keeps its bytes).

Fixtures are made in code (one small shapes export, a three-image shapes dataset, broken images and
checkpoints); the commands run in-process through click's CliRunner.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import zlib

import pytest
from click.testing import CliRunner

from maskrt.cli.app import cli


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    import struct

    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(width: int, height: int) -> bytes:
    """A grayscale PNG header that claims ``width`` x ``height`` (a few hundred bytes; never decoded)."""
    import struct

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _png_chunk(b"IEND", b""))


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """The fixture folder: good inputs (a shapes export, a dataset, an image) and bad ones."""
    import numpy as np
    import torch
    from PIL import Image

    from maskrt.data.images import synthetic_image
    from maskrt.data.shapes import write_coco

    root = tmp_path_factory.mktemp("bad_input")
    r = CliRunner().invoke(cli, ["export", "--arch", "shapes", "--input-size", "128x128", "-o", str(root / "s.onnx")])
    assert r.exit_code == 0, r.output
    write_coco(str(root / "ds"), 3, 5)
    ann = json.loads((root / "ds" / "annotations.json").read_text())

    def dataset(name, data):
        (root / "ds" / name).write_text(json.dumps(data))

    wrong = json.loads(json.dumps(ann))
    wrong["images"][0]["width"] += 7
    dataset("wrong_size.json", wrong)
    text_size = json.loads(json.dumps(ann))
    text_size["images"][0]["width"] = "wide"
    dataset("text_size.json", text_size)
    orphan = json.loads(json.dumps(ann))
    orphan["annotations"][0]["image_id"] = 999
    dataset("orphan.json", orphan)
    missing = json.loads(json.dumps(ann))
    missing["images"][0]["file_name"] = "nowhere.png"
    dataset("missing_image.json", missing)
    other = json.loads(json.dumps(ann))
    for c in other["categories"]:
        c["name"] = "zebra" + str(c["id"])
    dataset("other_classes.json", other)
    dataset("no_images.json", {**ann, "images": [], "annotations": []})
    dataset("list.json", [1, 2, 3])
    no_bbox = json.loads(json.dumps(ann))
    del no_bbox["annotations"][0]["bbox"]
    dataset("no_bbox.json", no_bbox)
    (root / "ds" / "broken.json").write_text(json.dumps(ann)[:100])
    (root / "ds" / "binary.json").write_bytes(os.urandom(200) + b"\xff\xfe")
    damaged = json.loads(json.dumps(ann))
    damaged["images"][0]["file_name"] = "../../trunc.png"
    dataset("damaged_image.json", damaged)

    img = Image.fromarray(synthetic_image(60, 80, 3).permute(1, 2, 0).numpy())
    img.save(root / "img.png")
    good = (root / "img.png").read_bytes()
    (root / "trunc.png").write_bytes(good[: len(good) // 3])
    (root / "text.png").write_text("this is not an image\n")
    (root / "empty.png").write_bytes(b"")
    (root / "bomb.png").write_bytes(bomb_png(15000, 15000))
    (root / "no_images").mkdir()
    (root / "no_images" / "readme.txt").write_text("no images here\n")
    (root / "bombs").mkdir()
    (root / "bombs" / "b.png").write_bytes(bomb_png(12000, 12000))

    (root / "names_binary.txt").write_bytes(bytes(range(256)) * 4)
    (root / "names_two.txt").write_text("a\nb\n")
    (root / "garbage.pth").write_bytes(os.urandom(512))
    (root / "empty.pth").write_bytes(b"")
    (root / "pickled.pth").write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    torch.save({"model": {"w": torch.zeros(2)}, "extra": np.float64(1.0).__class__}, root / "objects.pth")
    torch.save({"conv.weight": torch.zeros(2, 2)}, root / "whole.pth")
    (root / "truncated.pth").write_bytes((root / "whole.pth").read_bytes()[:300])
    torch.save({"conv.weight": torch.zeros(2, 2)}, root / "wrong_keys.pth")
    (root / "garbage.onnx").write_bytes(os.urandom(400))
    (root / "a_file").write_text("a file, not a folder\n")

    for name, payload in (("pickled", (root / "pickled.pth").read_bytes()),
                          ("truncated", (root / "truncated.pth").read_bytes()),
                          ("foreign", None)):
        (root / f"run_{name}").mkdir()
        target = root / f"run_{name}" / "checkpoint.pt"
        if payload is None:  # a weights-only file that is not a training checkpoint of this preset
            torch.save({"model": {"w": torch.zeros(1)}, "optimizer": {}, "iteration": 3, "history": "[]"}, target)
        else:
            target.write_bytes(payload)
    return root


def _digest(root) -> dict:
    out = {}
    for folder, _, files in os.walk(root):
        for f in files:
            p = os.path.join(folder, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = hashlib.sha256(fh.read()).hexdigest()
    return out


# (id, argv, exit status, text in the error line, outputs that must not exist afterwards)
E = 2  # a user error
CASES = [
    # the command line itself
    ("no-such-verb", ["frobnicate"], E, "No such command", []),
    ("unknown-option", ["export", "--arch", "shapes", "--bogus", "-o", "{out}/x.onnx"], E, "No such option",
     ["{out}/x.onnx"]),
    ("missing-option", ["export", "--arch", "shapes"], E, "Missing option", []),
    ("int-option-text", ["export", "--arch", "shapes", "--batch", "two", "-o", "{out}/x.onnx"], E, "not a valid integer",
     ["{out}/x.onnx"]),
    # export
    ("export-unknown-arch", ["export", "--arch", "nope", "-o", "{out}/x.onnx"], E, "unknown model", ["{out}/x.onnx"]),
    ("export-weights-missing", ["export", "--arch", "shapes", "--weights", "{root}/none.pth", "-o", "{out}/x.onnx"], E,
     "not found", ["{out}/x.onnx"]),
    ("export-weights-garbage", ["export", "--arch", "shapes", "--weights", "{root}/garbage.pth", "-o", "{out}/x.onnx"],
     E, "not a PyTorch checkpoint", ["{out}/x.onnx"]),
    ("export-weights-pickle", ["export", "--arch", "shapes", "--weights", "{root}/pickled.pth", "-o", "{out}/x.onnx"],
     E, "plain Python pickle", ["{out}/x.onnx"]),
    ("export-weights-objects", ["export", "--arch", "shapes", "--weights", "{root}/objects.pth", "-o", "{out}/x.onnx"],
     E, "pickled Python object", ["{out}/x.onnx"]),
    ("export-weights-truncated", ["export", "--arch", "shapes", "--weights", "{root}/truncated.pth", "-o",
                                  "{out}/x.onnx"], E, "damaged or truncated", ["{out}/x.onnx"]),
    ("export-weights-empty", ["export", "--arch", "shapes", "--weights", "{root}/empty.pth", "-o", "{out}/x.onnx"], E,
     "empty", ["{out}/x.onnx"]),
    ("export-weights-onnx", ["export", "--arch", "shapes", "--weights", "{root}/s.onnx", "-o", "{out}/x.onnx"], E,
     "not a checkpoint", ["{out}/x.onnx"]),
    ("export-weights-wrong-keys", ["export", "--arch", "shapes", "--weights", "{root}/wrong_keys.pth", "-o",
                                   "{out}/x.onnx"], E, "does not fit the model", ["{out}/x.onnx"]),
    ("export-weights-and-random", ["export", "--arch", "shapes", "--weights", "{root}/whole.pth", "--random-weights",
                                   "-o", "{out}/x.onnx"], E, "not both", ["{out}/x.onnx"]),
    ("export-class-names-binary", ["export", "--arch", "shapes", "--class-names", "{root}/names_binary.txt", "-o",
                                   "{out}/x.onnx"], E, "not a UTF-8 text file", ["{out}/x.onnx"]),
    ("export-class-names-count", ["export", "--arch", "shapes", "--class-names", "{root}/names_two.txt", "-o",
                                  "{out}/x.onnx"], E, "class names", ["{out}/x.onnx"]),
    ("export-input-size-huge", ["export", "--arch", "shapes", "--input-size", "100000x100000", "-o", "{out}/x.onnx"],
     E, "larger than 16384", ["{out}/x.onnx"]),
    ("export-input-size-text", ["export", "--arch", "shapes", "--input-size", "big", "-o", "{out}/x.onnx"], E,
     "must look like HxW", ["{out}/x.onnx"]),
    ("export-input-size-tiny", ["export", "--arch", "shapes", "--input-size", "8x8", "-o", "{out}/x.onnx"], E,
     "at least 32x32", ["{out}/x.onnx"]),
    ("export-min-size-zero", ["export", "--arch", "shapes", "--min-size", "0", "-o", "{out}/x.onnx"], E,
     "--min-size must be a positive", ["{out}/x.onnx"]),
    ("export-max-size-huge", ["export", "--arch", "shapes", "--max-size", "99999", "-o", "{out}/x.onnx"], E,
     "--max-size 99999 is larger", ["{out}/x.onnx"]),
    ("export-batch-zero", ["export", "--arch", "shapes", "--batch", "0", "-o", "{out}/x.onnx"], E, "batch must be",
     ["{out}/x.onnx"]),
    ("export-batch-and-dynamic", ["export", "--arch", "shapes", "--batch", "2", "--dynamic-batch", "-o",
                                  "{out}/x.onnx"], E, "give one of them", ["{out}/x.onnx"]),
    ("export-opset-old", ["export", "--arch", "shapes", "--opset", "3", "-o", "{out}/x.onnx"], E, "too old",
     ["{out}/x.onnx"]),
    ("export-max-detections-zero", ["export", "--arch", "shapes", "--max-detections", "0", "-o", "{out}/x.onnx"], E,
     "--max-detections must be >= 1", ["{out}/x.onnx"]),
    ("export-score-threshold", ["export", "--arch", "shapes", "--score-threshold", "2", "-o", "{out}/x.onnx"], E,
     "--score-threshold must be in", ["{out}/x.onnx"]),
    ("export-num-classes", ["export", "--arch", "shapes", "--num-classes", "1", "-o", "{out}/x.onnx"], E,
     "num_classes must be an integer >= 2", ["{out}/x.onnx"]),
    ("export-num-classes-huge", ["export", "--arch", "shapes", "--num-classes", "99999999999999999999", "-o",
                                 "{out}/x.onnx"], E, "is more than 100000", ["{out}/x.onnx"]),
    ("export-verify-images-alone", ["export", "--arch", "shapes", "--verify-images", "{root}/img.png", "-o",
                                    "{out}/x.onnx"], E, "--verify-images needs --verify", ["{out}/x.onnx"]),
    ("export-verify-image-truncated", ["export", "--arch", "shapes", "--verify", "--verify-images", "{root}/trunc.png",
                                       "-o", "{out}/x.onnx"], E, "cannot read image", ["{out}/x.onnx"]),
    ("export-verify-image-bomb", ["export", "--arch", "shapes", "--verify", "--verify-images", "{root}/bomb.png", "-o",
                                  "{out}/x.onnx"], E, "decompression bomb", ["{out}/x.onnx"]),
    ("export-output-is-folder", ["export", "--arch", "shapes", "-o", "{root}/ds"], E, "is a directory", []),
    ("export-output-no-folder", ["export", "--arch", "shapes", "-o", "{out}/nowhere/x.onnx"], E, "does not exist",
     ["{out}/nowhere"]),
    ("export-output-under-file", ["export", "--arch", "shapes", "-o", "{root}/a_file/x.onnx"], E, "does not exist", []),
    ("export-output-is-weights", ["export", "--arch", "shapes", "--weights", "{root}/whole.pth", "-o",
                                  "{root}/whole.pth"], E, "one of the inputs", []),
    # predict
    ("predict-image-missing", ["predict", "{root}/s.onnx", "{root}/none.png", "--out", "{out}/p"], E,
     "image not found", ["{out}/p/predictions.json"]),
    ("predict-image-truncated", ["predict", "{root}/s.onnx", "{root}/trunc.png", "--out", "{out}/p"], E,
     "truncated", ["{out}/p/predictions.json", "{out}/p/trunc.png"]),
    ("predict-image-text", ["predict", "{root}/s.onnx", "{root}/text.png", "--out", "{out}/p"], E,
     "cannot read image", ["{out}/p/predictions.json"]),
    ("predict-image-empty", ["predict", "{root}/s.onnx", "{root}/empty.png", "--out", "{out}/p"], E,
     "cannot read image", ["{out}/p/predictions.json"]),
    ("predict-image-bomb", ["predict", "{root}/s.onnx", "{root}/bomb.png", "--out", "{out}/p"], E,
     "decompression bomb", ["{out}/p/predictions.json"]),
    ("predict-folder-no-images", ["predict", "{root}/s.onnx", "{root}/no_images", "--out", "{out}/p"], E,
     "holds no images", ["{out}/p"]),
    ("predict-glob-no-match", ["predict", "{root}/s.onnx", "{root}/*.jpeg", "--out", "{out}/p"], E, "no file matches",
     ["{out}/p"]),
    ("predict-model-garbage", ["predict", "{root}/garbage.onnx", "{root}/img.png", "--out", "{out}/p"], E,
     "not a readable ONNX model", ["{out}/p"]),
    ("predict-model-missing", ["predict", "{root}/none.onnx", "{root}/img.png", "--out", "{out}/p"], E, "none.onnx",
     ["{out}/p"]),
    ("predict-model-is-image", ["predict", "{root}/img.png", "{root}/img.png", "--out", "{out}/p"], E, "not a model",
     ["{out}/p"]),
    ("predict-checkpoint-option-on-onnx", ["predict", "{root}/s.onnx", "{root}/img.png", "--input-size", "64x64",
                                           "--out", "{out}/p"], E, "checkpoints only", ["{out}/p"]),
    ("predict-score-threshold", ["predict", "{root}/s.onnx", "{root}/img.png", "--score-threshold", "7", "--out",
                                 "{out}/p"], E, "--score-threshold must be in", ["{out}/p"]),
    ("predict-max-pixels", ["predict", "{root}/s.onnx", "{root}/img.png", "--max-pixels", "0", "--out", "{out}/p"], E,
     "--max-pixels must be >= 1", ["{out}/p"]),
    ("predict-out-is-file", ["predict", "{root}/s.onnx", "{root}/img.png", "--out", "{root}/a_file"], E,
     "is a file", []),
    ("predict-pickle-checkpoint", ["predict", "{root}/pickled.pth", "{root}/img.png", "--arch", "shapes", "--out",
                                   "{out}/p"], E, "never unpickles code", ["{out}/p/predictions.json"]),
    # eval
    ("eval-coco-missing", ["eval", "{root}/s.onnx", "--coco", "{root}/none.json"], E, "not found", []),
    ("eval-coco-broken-json", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/broken.json"], E, "not valid JSON", []),
    ("eval-coco-binary", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/binary.json"], E, "binary.json", []),
    ("eval-coco-list", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/list.json"], E, "not a COCO instances file", []),
    ("eval-coco-no-images", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/no_images.json"], E, "lists no images", []),
    ("eval-coco-orphan", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/orphan.json"], E, "refers to image 999", []),
    ("eval-coco-no-bbox", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/no_bbox.json"], E, "needs \"bbox\"", []),
    ("eval-coco-wrong-size", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/wrong_size.json"], E,
     "not the size the file gives", []),
    ("eval-coco-text-size", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/text_size.json"], E,
     "whole numbers of pixels", []),
    ("eval-coco-missing-image", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/missing_image.json"], E,
     "are not in", []),
    ("eval-coco-damaged-image", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/damaged_image.json"], E,
     "cannot read image", []),
    ("eval-coco-other-classes", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/other_classes.json"], E,
     "the model has no class", []),
    ("eval-images-not-folder", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/annotations.json", "--images",
                                "{root}/none"], E, "not a folder", []),
    ("eval-images-no-images", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/annotations.json", "--images",
                               "{root}/no_images"], E, "holds no images", []),
    ("eval-limit-zero", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/annotations.json", "--limit", "0"], E,
     "--limit must be >= 1", []),
    ("eval-batch-zero", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/annotations.json", "--batch", "0"], E,
     "--batch must be >= 1", []),
    ("eval-score-threshold", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/annotations.json", "--score-threshold",
                              "-1"], E, "--score-threshold must be in", []),
    ("eval-json-no-folder", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/annotations.json", "--json",
                             "{out}/nowhere/e.json"], E, "does not exist", ["{out}/nowhere"]),
    ("eval-json-under-file", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/annotations.json", "--json",
                              "{root}/a_file/e.json"], E, "does not exist", []),
    ("eval-json-is-input", ["eval", "{root}/s.onnx", "--coco", "{root}/ds/annotations.json", "--json",
                            "{root}/ds/annotations.json"], E, "one of the inputs", []),
    ("eval-model-garbage", ["eval", "{root}/garbage.onnx", "--coco", "{root}/ds/annotations.json"], E,
     "not a readable ONNX model", []),
    # profile
    ("profile-nothing", ["profile"], E, "give MODEL", []),
    ("profile-batch-zero", ["profile", "{root}/s.onnx", "--batch", "0"], E, "batch sizes must be >= 1", []),
    ("profile-batch-text", ["profile", "{root}/s.onnx", "--batch", "1,x"], E, "positive integers", []),
    ("profile-duration-nan", ["profile", "{root}/s.onnx", "--duration", "nan"], E, "finite number", []),
    ("profile-duration-zero", ["profile", "{root}/s.onnx", "--duration", "0"], E, "finite number", []),
    ("profile-warmup-inf", ["profile", "{root}/s.onnx", "--warmup-seconds", "inf"], E, "finite number", []),
    ("profile-warmup-negative", ["profile", "{root}/s.onnx", "--warmup", "-1"], E, "--warmup must be >= 0", []),
    ("profile-iterations-zero", ["profile", "{root}/s.onnx", "--iterations", "0"], E, "--iterations must be >= 1", []),
    ("profile-layers-on-onnx", ["profile", "{root}/s.onnx", "--layers"], E, "--layers needs a TensorRT engine", []),
    ("profile-fp16-on-onnx", ["profile", "{root}/s.onnx", "--fp16"], E, "--fp16 applies to", []),
    ("profile-trt-cache", ["profile", "{root}/s.onnx", "--trt-cache", "{out}/c"], E, "--trt-cache applies", []),
    ("profile-random-weights-and-model", ["profile", "{root}/s.onnx", "--random-weights"], E, "replaces MODEL", []),
    ("profile-images-not-folder", ["profile", "{root}/s.onnx", "--images", "{root}/img.png", "--iterations", "1"], E,
     "not a folder", []),
    ("profile-images-unreadable", ["profile", "{root}/s.onnx", "--images", "{root}/bombs", "--iterations", "1"], E,
     "decompression bomb", []),
    ("profile-json-is-model", ["profile", "{root}/s.onnx", "--json", "{root}/s.onnx"], E, "one of the inputs", []),
    ("profile-html-no-folder", ["profile", "{root}/s.onnx", "--html", "{out}/nowhere/r.html"], E, "does not exist",
     ["{out}/nowhere"]),
    # bench
    ("bench-backend-unknown", ["bench", "{root}/s.onnx", "--backends", "magic"], E, "unknown backend", []),
    ("bench-backend-not-applying", ["bench", "{root}/s.onnx", "--backends", "tensorrt"], E, "applies to the models",
     []),
    ("bench-batch-zero", ["bench", "{root}/s.onnx", "--batch", "0"], E, "--batch must be >= 1", []),
    ("bench-dataset-limit-alone", ["bench", "{root}/s.onnx", "--dataset-limit", "2", "--iterations", "1"], E,
     "need --dataset", []),
    ("bench-dataset-broken", ["bench", "{root}/s.onnx", "--dataset", "{root}/ds/broken.json", "--iterations", "1"], E,
     "not valid JSON", []),
    ("bench-html-is-model", ["bench", "{root}/s.onnx", "--html", "{root}/s.onnx"], E, "one of the inputs", []),
    ("bench-model-garbage", ["bench", "{root}/garbage.onnx", "--iterations", "1", "--json", "{out}/b.json"], E,
     "not a readable ONNX model", ["{out}/b.json"]),
    # build (these are refused before TensorRT is needed)
    ("build-onnx-garbage", ["build", "{root}/garbage.onnx", "-o", "{out}/x.engine"], E, "not a readable ONNX model",
     ["{out}/x.engine"]),
    ("build-output-is-input", ["build", "{root}/s.onnx", "-o", "{root}/s.onnx"], E, "one of the inputs", []),
    ("build-output-no-folder", ["build", "{root}/s.onnx", "-o", "{out}/nowhere/x.engine"], E, "does not exist",
     ["{out}/nowhere"]),
    # check
    ("check-not-onnx", ["check", "{root}/img.png"], E, "not a readable ONNX model", []),
    ("check-missing", ["check", "{root}/none.onnx"], E, "none.onnx", []),
    ("check-max-batch", ["check", "{root}/s.onnx", "--max-batch", "0"], E, "--max-batch must be a positive", []),
    ("check-tensorrt-version", ["check", "{root}/s.onnx", "--tensorrt", "9"], E, "--tensorrt must be one of", []),
    # detect
    ("detect-image-truncated", ["detect", "--image", "{root}/trunc.png"], E, "cannot read image", []),
    ("detect-image-bomb", ["detect", "--image", "{root}/bomb.png"], E, "decompression bomb", []),
    ("detect-image-folder", ["detect", "--image", "{root}/ds"], E, "is a directory", []),
    ("detect-min-size-zero", ["detect", "--min-size", "0"], E, "--min-size must be a positive", []),
    ("detect-top-negative", ["detect", "--top", "-1"], E, "--top must be >= 0", []),
    ("detect-score-threshold", ["detect", "--score-threshold", "1"], E, "--score-threshold must be in", []),
    ("detect-size-zero", ["detect", "--size", "0x0"], E, "--size must be at least", []),
    ("detect-no-weights", ["detect", "--arch", "maskrcnn_resnet18_fpn"], E, "ships no weights", []),
    ("detect-weights-garbage", ["detect", "--weights", "{root}/garbage.pth"], E, "not a PyTorch checkpoint", []),
    # data
    ("data-count-zero", ["data", "shapes", "--count", "0", "--out", "{out}/d"], E, "--count must be >= 1", ["{out}/d"]),
    ("data-seed-negative", ["data", "shapes", "--count", "1", "--seed", "-1", "--out", "{out}/d"], E,
     "--seed must be >= 0", ["{out}/d"]),
    ("data-out-is-file", ["data", "shapes", "--count", "1", "--out", "{root}/a_file"], E, "is an existing file", []),
    # train
    ("train-resume-none", ["train", "--out", "{out}/t", "--resume", "--iterations", "1"], E,
     "drop --resume to train from scratch", ["{out}/t"]),
    ("train-resume-pickle", ["train", "--out", "{root}/run_pickled", "--resume", "--iterations", "1", "--warmup", "0"],
     E, "never unpickles code", ["{root}/run_pickled/model.safetensors"]),
    ("train-resume-truncated", ["train", "--out", "{root}/run_truncated", "--resume", "--iterations", "1", "--warmup",
                                "0"], E, "damaged or truncated", ["{root}/run_truncated/model.safetensors"]),
    ("train-resume-foreign", ["train", "--out", "{root}/run_foreign", "--resume", "--iterations", "1", "--warmup",
                              "0"], E, "does not fit --arch", ["{root}/run_foreign/model.safetensors"]),
    ("train-lr-negative", ["train", "--out", "{out}/t", "--lr", "-1"], E, "lr must be positive", ["{out}/t"]),
    ("train-iterations-zero", ["train", "--out", "{out}/t", "--iterations", "0"], E, "must be a positive integer",
     ["{out}/t"]),
    ("train-out-is-file", ["train", "--out", "{root}/a_file"], E, "is a file", []),
    ("train-unknown-arch", ["train", "--out", "{out}/t", "--arch", "nope"], E, "unknown model", ["{out}/t"]),
    # demo
    ("demo-weights-garbage", ["demo", "--weights", "{root}/garbage.pth", "--out", "{out}/demo"], E,
     "not a PyTorch checkpoint", ["{out}/demo"]),
    ("demo-weights-missing", ["demo", "--weights", "{root}/none.pth", "--out", "{out}/demo"], E, "not found",
     ["{out}/demo"]),
    ("demo-images-zero", ["demo", "--images", "0", "--out", "{out}/demo"], E, "--images must be >= 1", ["{out}/demo"]),
    ("demo-out-is-file", ["demo", "--out", "{root}/a_file"], E, "is a file", []),
    # explain
    ("explain-image-truncated", ["explain", "roi-align", "--image", "{root}/trunc.png", "--out", "{out}/e.html"], E,
     "cannot read image", ["{out}/e.html"]),
    ("explain-out-is-image", ["explain", "roi-align", "--image", "{root}/img.png", "--out", "{root}/img.png"], E,
     "one of the inputs", []),
    ("explain-box-text", ["explain", "roi-align", "--box", "left", "--out", "{out}/e.html"], E, "--box",
     ["{out}/e.html"]),
    ("explain-output-size-zero", ["explain", "roi-align", "--output-size", "0", "--out", "{out}/e.html"], E,
     "output", ["{out}/e.html"]),
    ("explain-out-no-folder", ["explain", "roi-align", "--out", "{out}/nowhere/e.html"], E, "does not exist",
     ["{out}/nowhere"]),
    # plugins
    ("plugins-tensorrt-root-missing", ["plugins", "build", "--tensorrt-root", "{root}/no_tensorrt", "--output-dir",
                                       "{out}/lib"], E, "--tensorrt-root", ["{out}/lib"]),
    ("plugins-jobs-zero", ["plugins", "build", "--jobs", "0", "--output-dir", "{out}/lib"], E, "--jobs must be >= 1",
     ["{out}/lib"]),
    ("plugins-cuda-arch-text", ["plugins", "build", "--cuda-arch", "fast", "--output-dir", "{out}/lib"], E,
     "--cuda-arch must be numbers", ["{out}/lib"]),
    ("plugins-output-under-file", ["plugins", "build", "--output-dir", "{root}/a_file/lib"], E, "--output-dir", []),
    # serving (refused before any server starts)
    ("serve-model-missing", ["serve", "{root}/none.onnx"], E, "model not found", []),
    ("serve-model-is-image", ["serve", "{root}/img.png"], E, "not a model", []),
    ("triton-model-missing", ["triton", "{root}/none.onnx", "--out", "{out}/repo"], E, "model not found",
     ["{out}/repo"]),
    ("triton-model-is-image", ["triton", "{root}/img.png", "--out", "{out}/repo"], E, "not a model", ["{out}/repo"]),
    ("triton-out-missing", ["triton", "{root}/s.onnx"], E, "Missing option '--out'", []),
]


def _fill(text: str, root, out) -> str:
    return text.replace("{root}", str(root)).replace("{out}", str(out))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gets_one_clean_line(case, inputs, tmp_path):
    name, argv, status, text, outputs = case
    out = tmp_path / "out"
    out.mkdir()
    before = _digest(inputs)
    r = CliRunner().invoke(cli, [_fill(a, inputs, out) for a in argv], catch_exceptions=True)
    shown = r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), (
        f"{name}: {type(r.exception).__name__} escaped: {r.exception!r}\n{shown}")
    assert "Traceback" not in shown, shown
    assert r.exit_code == status, f"{name}: exit {r.exit_code}\n{shown}"
    last = [line for line in r.stderr.splitlines() if line.strip()][-1]
    assert last.startswith("error: "), f"{name}: last line is not the error: {last!r}\n{shown}"
    assert text in last, f"{name}: {text!r} not in {last!r}"
    for path in outputs:
        assert not os.path.exists(_fill(path, inputs, out)), f"{name}: {path} was written"
    left = [os.path.join(d, f) for d, _, files in os.walk(out) for f in files]
    assert left == [], f"{name}: files left behind: {left}"
    assert _digest(inputs) == before, f"{name}: an input file changed"
    temporary = [f for d, _, files in os.walk(inputs) for f in files if f.endswith(".tmp")]
    assert temporary == [], temporary


def test_every_verb_has_bad_input_cases():
    verbs = {case[1][0] for case in CASES}
    assert {c.name for c in cli.commands.values()} - {"env", "models"} <= verbs  # env, models take no input


# Options that would be silently ignored get one `note:` line (the command then goes on; here it fails later on
# purpose, so that nothing slow runs).
NOTES = [
    ("detect-size-with-image", ["detect", "--image", "{root}/trunc.png", "--size", "10x10"],
     "--size is ignored with --image"),
    ("profile-duration-with-iterations", ["profile", "{root}/s.onnx", "--iterations", "2", "--duration", "9",
                                          "--layers"], "--duration is ignored: --iterations 2"),
    ("profile-warmup-seconds-with-warmup", ["profile", "{root}/s.onnx", "--warmup", "1", "--warmup-seconds", "3",
                                            "--layers"], "--warmup-seconds is ignored: --warmup 1"),
    ("train-warmup-longer-than-run", ["train", "--out", "{root}/run_truncated", "--resume", "--iterations", "2",
                                      "--warmup", "5"], "never reaches --lr"),
    ("plugins-cuda-arch-with-no-cuda", ["plugins", "build", "--no-cuda", "--cuda-arch", "75", "--output-dir",
                                        "{root}/a_file/lib"], "--cuda-arch is ignored with --no-cuda"),
]


@pytest.mark.parametrize("case", NOTES, ids=[c[0] for c in NOTES])
def test_ignored_option_gets_one_note(case, inputs, tmp_path):
    name, argv, text = case
    r = CliRunner().invoke(cli, [_fill(a, inputs, tmp_path) for a in argv])
    notes = [line for line in r.stderr.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and text in notes[0], r.output
    assert r.exit_code == 2 and "Traceback" not in r.output


# Ctrl-C: exit 130, what finished is kept (and marked), nothing half-written.
def _interrupt_on_call(monkeypatch, module, name, call: int):
    import importlib

    mod = importlib.import_module(module)
    real = getattr(mod, name)
    count = {"n": 0}

    def wrapper(*args, **kwargs):
        count["n"] += 1
        if count["n"] >= call:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(mod, name, wrapper)


def _tmp_files(folder) -> list:
    return [f for _, _, files in os.walk(folder) for f in files if f.endswith(".tmp")]


def test_ctrl_c_in_predict_keeps_the_images_done(inputs, tmp_path, monkeypatch):
    import shutil

    for k in range(3):
        shutil.copy(inputs / "img.png", tmp_path / f"im{k}.png")
    _interrupt_on_call(monkeypatch, "maskrt.data.draw", "draw_detections", 2)
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["predict", str(inputs / "s.onnx"), str(tmp_path / "im*.png"), "--out", str(out)])
    assert r.exit_code == 130 and "Traceback" not in r.output, r.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and [i["source"] for i in summary["images"]] == [str(tmp_path / "im0.png")]
    assert isinstance(json.loads((out / "predictions.json").read_text()), list)
    assert sorted(os.listdir(out)) == ["im0.png", "predictions.json", "summary.json"] and _tmp_files(tmp_path) == []


def test_ctrl_c_in_data_shapes_leaves_no_dataset_file(tmp_path, monkeypatch):
    _interrupt_on_call(monkeypatch, "maskrt.data.shapes", "make_scene", 3)
    r = CliRunner().invoke(cli, ["data", "shapes", "--count", "5", "--out", str(tmp_path / "d")])
    assert r.exit_code == 130 and "Traceback" not in r.output, r.output
    assert not (tmp_path / "d" / "annotations.json").exists()
    assert len(os.listdir(tmp_path / "d" / "images")) == 2 and _tmp_files(tmp_path) == []


def test_ctrl_c_in_export_writes_no_onnx(tmp_path, monkeypatch):
    _interrupt_on_call(monkeypatch, "torch.onnx", "export", 1)
    r = CliRunner().invoke(cli, ["export", "--arch", "shapes", "-o", str(tmp_path / "x.onnx")])
    assert r.exit_code == 130 and "Traceback" not in r.output, r.output
    assert os.listdir(tmp_path) == []


def test_ctrl_c_in_eval_writes_no_report(inputs, tmp_path, monkeypatch):
    _interrupt_on_call(monkeypatch, "maskrt.evaluation.coco", "coco_results", 1)
    r = CliRunner().invoke(cli, ["eval", str(inputs / "s.onnx"), "--coco", str(inputs / "ds" / "annotations.json"),
                                 "--json", str(tmp_path / "e.json")])
    assert r.exit_code == 130 and "Traceback" not in r.output, r.output
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_outputs_take_the_umask_even_from_writers_that_replace_the_file(tmp_path, umask):
    """safetensors writes its file 0600 whatever the umask; maskrt's outputs follow the umask like any file."""
    import torch
    from safetensors.torch import save_file

    from maskrt.core.fileio import atomic_output, atomic_write

    old = os.umask(umask)
    try:
        with atomic_output(tmp_path / "w.safetensors") as tmp:
            save_file({"w": torch.zeros(2)}, tmp)
        atomic_write(tmp_path / "r.json", "{}")
    finally:
        os.umask(old)
    for name in ("w.safetensors", "r.json"):
        assert os.stat(tmp_path / name).st_mode & 0o777 == 0o666 & ~umask, name


def test_boxes_left_degenerate_by_a_thin_image_are_dropped():
    """A 1-pixel-high image sits in a taller canvas; a box the graph found in the padding below it is empty once
    clipped to the image, and is dropped (the eager model's remove_small_boxes after its clip); boxes on the
    image stay, in the image's pixels."""
    import torch

    from maskrt.inference.predictor import Prepared, postprocess

    outputs = {"num_detections": torch.tensor([2]), "scores": torch.tensor([[0.9, 0.8]]),
               "boxes": torch.tensor([[[10.0, 20.0, 50.0, 40.0], [10.0, 0.0, 50.0, 1.0]]]),
               "labels": torch.tensor([[1, 2]]), "masks": torch.zeros(1, 2, 28, 28)}
    prep = Prepared(torch.zeros(3, 64, 64, dtype=torch.uint8), (1, 64), (1, 32), "thin.png")
    det = postprocess(outputs, 0, prep, ["__background__", "a", "b"])
    assert len(det) == 1 and det.names == ["b"]
    assert det.boxes.tolist() == [[5.0, 0.0, 25.0, 1.0]]


@pytest.mark.parametrize("shape", [(1, 3000), (3000, 1), (1, 1)])
def test_a_sliver_image_is_resized_to_at_least_one_pixel(inputs, shape):
    """A 1x3000 image scaled to the model's rule would be 0 pixels high (F.interpolate raised); it keeps one."""
    import torch

    from maskrt.core.metadata import ModelMeta
    from maskrt.core.onnxfile import load_onnx, metadata_props
    from maskrt.inference.predictor import prepare
    from maskrt.model.transform import resize_image

    meta = ModelMeta.from_props(metadata_props(load_onnx(str(inputs / "s.onnx"))))
    image = torch.full((3, *shape), 200, dtype=torch.uint8)
    prep = prepare(image, meta)
    assert min(prep.resized) >= 1 and tuple(prep.canvas.shape[1:]) == tuple(meta.input_size)
    assert int(prep.canvas[0, 0, 0]) == 200
    eager = resize_image(image.float(), 320, 384)
    assert min(eager.shape[1:]) >= 1 and float(eager[0, 0, 0]) == pytest.approx(200.0)
