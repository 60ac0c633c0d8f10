"""maskrt eval from the command line: table and JSON on a tiny export; bad input is one line with exit 2."""

from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from maskrt.cli.app import cli
from tests.cli.test_cli import run
from tests.evaluation.test_coco import make_dataset
from tests.profiling.perf_helpers import TINY_SIZE, tiny_model


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny dynamic-batch ONNX export (classes class_1, class_2), its checkpoint, and a matching dataset."""
    from safetensors.torch import save_file

    from maskrt.export.onnx_export import to_onnx

    folder = tmp_path_factory.mktemp("evalcli")
    model = tiny_model()
    onnx_path = folder / "tiny.onnx"
    to_onnx(model, onnx_path, input_size=TINY_SIZE, batch=1, dynamic_batch=True, score_threshold=0.0)
    ckpt = folder / "tiny.safetensors"
    save_file(model.state_dict(), str(ckpt))
    ann, images, _ = make_dataset(folder / "data")
    return folder, onnx_path, ckpt, ann, images


def test_eval_onnx_table_and_json(files, tmp_path):
    _, onnx_path, _, ann, images = files
    out = tmp_path / "eval.json"
    r = run("eval", str(onnx_path), "--coco", str(ann), "--images", str(images), "--batch", "2", "--json", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "maskrt eval: tiny.onnx [onnxruntime]" in r.stdout
    for word in ("AP50", "AP75", "APs", "APm", "APl", "bbox", "segm", "3 images"):
        assert word in r.stdout
    assert f"wrote {out}" in r.stdout
    assert os.listdir(tmp_path) == ["eval.json"]  # no temporary file left
    data = json.loads(out.read_text())
    assert data["schema"] == "maskrt.eval-report" and data["backend"] == "onnxruntime" and data["batch"] == 2
    assert data["num_images"] == 3 and data["num_detections"] > 0
    assert data["model"]["name"] == "tiny.onnx" and len(data["model"]["sha256"]) == 64
    assert data["dataset"]["annotations"] == str(ann) and len(data["dataset"]["sha256"]) == 64
    assert set(data["metrics"]) == {"bbox", "segm"}
    for values in data["metrics"].values():
        assert set(values) == {"AP", "AP50", "AP75", "APs", "APm", "APl"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in values.values())
    assert "environment" in data and data["created"]


def test_eval_checkpoint_with_limit_in_process(files):
    _, _, ckpt, ann, images = files
    r = CliRunner().invoke(cli, ["eval", str(ckpt), "--coco", str(ann), "--images", str(images), "--arch",
                                 "maskrcnn_resnet18_fpn", "--num-classes", "3", "--input-size", "64x96",
                                 "--limit", "1"])
    assert r.exit_code == 0, r.output
    assert "tiny.safetensors [torch]" in r.output and "1 images" in r.output
    assert "—" in r.output  # APl: a 64x96 image holds no large object


def _bad_inputs(folder, onnx_path, ckpt, ann, images, tmp):
    (tmp / "empty").mkdir()
    (tmp / "bad.json").write_text("not json {")
    zebra_ann, zebra_images, _ = make_dataset(tmp / "zebra", extra_category="zebra")
    data = json.loads(ann.read_text())
    data["images"].append({"id": 1, "file_name": "lost.png"})
    (tmp / "missing.json").write_text(json.dumps(data))
    return {
        "not_json": (["eval", str(onnx_path), "--coco", str(tmp / "bad.json"), "--images", str(images)],
                     "is not valid JSON"),
        "categories": (["eval", str(onnx_path), "--coco", str(zebra_ann), "--images", str(zebra_images)],
                       "no class for 1 of the dataset's 3 categories: zebra (id 99)"),
        "missing_image": (["eval", str(onnx_path), "--coco", str(tmp / "missing.json"), "--images", str(images)],
                          "1 of the 4 images"),
        "empty_folder": (["eval", str(onnx_path), "--coco", str(ann), "--images", str(tmp / "empty")],
                         "holds no images"),
        "no_arch": (["eval", str(ckpt), "--coco", str(ann), "--images", str(images)], "needs --arch"),
        "limit": (["eval", str(onnx_path), "--coco", str(ann), "--images", str(images), "--limit", "0"],
                  "--limit must be >= 1"),
        "backend": (["eval", str(onnx_path), "--coco", str(ann), "--images", str(images), "--backend", "nope"],
                    "'nope' is not one of"),
        "no_model": (["eval", str(folder / "none.onnx"), "--coco", str(ann), "--images", str(images)],
                     "model not found"),
        "json_folder": (["eval", str(onnx_path), "--coco", str(ann), "--images", str(images), "--json",
                         str(tmp / "nowhere" / "e.json")], "does not exist"),
    }


CASES = ["not_json", "categories", "missing_image", "empty_folder", "no_arch", "limit", "backend", "no_model",
         "json_folder"]


@pytest.mark.parametrize("case", CASES)
def test_bad_input_exits_2_in_process(files, tmp_path, case):
    args, fragment = _bad_inputs(*files, tmp_path)[case]
    out = tmp_path / "e.json"
    if "--json" not in args:
        args = args + ["--json", str(out)]
    r = CliRunner().invoke(cli, args)
    assert r.exit_code == 2, (r.output, r.exception)
    lines = [line for line in r.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.output
    assert not out.exists()


@pytest.mark.parametrize("case", ["not_json", "categories"])
def test_bad_input_is_one_line_without_traceback(files, tmp_path, case):
    args, fragment = _bad_inputs(*files, tmp_path)[case]
    out = tmp_path / "e.json"
    r = run(*args, "--json", str(out))
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.stderr
    assert not out.exists() and not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]


def test_bench_dataset_fills_the_ap_columns_with_evals_numbers(files, tmp_path):
    _, onnx_path, _, ann, images = files
    out = tmp_path / "bench.json"
    r = CliRunner().invoke(cli, ["bench", str(onnx_path), "--iterations", "2", "--warmup", "0", "--dataset", str(ann),
                                 "--dataset-images", str(images), "--json", str(out)])
    assert r.exit_code == 0, r.output
    assert "bbox AP" in r.output and "segm AP" in r.output
    run_ = json.loads(out.read_text())["runs"][0]
    e = CliRunner().invoke(cli, ["eval", str(onnx_path), "--coco", str(ann), "--images", str(images),
                                 "--json", str(tmp_path / "eval.json")])
    assert e.exit_code == 0, e.output
    metrics = json.loads((tmp_path / "eval.json").read_text())["metrics"]
    assert run_["accuracy"]["bbox_ap"] == metrics["bbox"]["AP"]
    assert run_["accuracy"]["segm_ap"] == metrics["segm"]["AP"]
    assert run_["accuracy"]["num_images"] == 3


def test_bench_dataset_bad_input_before_timing(files, tmp_path):
    _, onnx_path, _, ann, images = files
    r = CliRunner().invoke(cli, ["bench", str(onnx_path), "--iterations", "2", "--dataset", str(tmp_path / "no.json")])
    assert r.exit_code == 2 and "error:" in r.output and "no.json" in r.output
    r = CliRunner().invoke(cli, ["bench", str(onnx_path), "--iterations", "2", "--dataset-limit", "3"])
    assert r.exit_code == 2 and "need --dataset ANNOTATIONS.json" in r.output
