"""The command line: help and version without heavy imports, one-line errors, the detect command."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from click.testing import CliRunner

from maskrt import __version__
from maskrt.cli.app import cli


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskrt", *args], capture_output=True, text=True, timeout=300)


def test_help_and_version_do_not_import_torch():
    code = (
        "import sys; from maskrt.cli.app import cli\n"
        "try:\n    cli(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip().endswith("False"), out.stdout + out.stderr
    v = run("--version")
    assert v.returncode == 0 and __version__ in v.stdout


def test_models_lists_presets():
    r = CliRunner().invoke(cli, ["models"])
    assert r.exit_code == 0
    assert "maskrcnn_resnet50_fpn_v2" in r.output and "maskrcnn_resnet18_fpn" in r.output


def test_detect_generated_image():
    r = CliRunner().invoke(
        cli, ["detect", "--random-weights", "--arch", "maskrcnn_resnet18_fpn", "--size", "64x96", "--min-size", "64",
              "--max-size", "96", "--score-threshold", "0", "--top", "3"]
    )
    assert r.exit_code == 0, r.output
    assert "100 detections" in r.output
    assert len([line for line in r.output.splitlines() if line.strip()[:1].isdigit()]) == 3


def test_detect_with_checkpoint_and_image_file(tmp_path):
    from PIL import Image

    from maskrt.model import build

    torch.manual_seed(0)
    torch.save(build("maskrcnn_resnet18_fpn", num_classes=3).state_dict(), tmp_path / "w.pth")
    Image.new("L", (80, 60), 128).save(tmp_path / "gray.png")  # grayscale is converted to RGB
    r = CliRunner().invoke(
        cli, ["detect", "--weights", str(tmp_path / "w.pth"), "--num-classes", "3", "--arch", "maskrcnn_resnet18_fpn",
              "--image", str(tmp_path / "gray.png"), "--min-size", "60", "--max-size", "80"]
    )
    assert r.exit_code == 0, r.output
    assert "gray.png" in r.output


@pytest.mark.parametrize(
    "args,fragment",
    [
        (["detect", "--arch", "maskrcnn_resnet18_fpn"], "maskrcnn_resnet18_fpn ships no weights: pass --weights FILE (a checkpoint) or --random-weights"),
        (["detect", "--random-weights", "--arch", "nope"], "unknown model 'nope'"),
        (["detect", "--weights", "w.pth", "--random-weights"], "pass one of --weights FILE or --random-weights, not both"),
        (["detect", "--random-weights", "--size", "big"], "--size must look like HxW"),
        (["detect", "--random-weights", "--num-classes", "1"], "num_classes must be an integer >= 2"),
        (["detect", "--weights", "/nonexistent/w.pth"], "checkpoint not found"),
        (["detect", "--random-weights", "--image", "/nonexistent/x.png"], "image not found"),
    ],
)
def test_bad_input_is_one_line_without_traceback(args, fragment):
    r = run(*args)
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], r.stderr


def test_wrong_checkpoint_for_arch(tmp_path):
    from maskrt.model import build

    torch.manual_seed(0)
    torch.save(build("maskrcnn_resnet18_fpn", num_classes=3).state_dict(), tmp_path / "w.pth")
    r = run("detect", "--weights", str(tmp_path / "w.pth"), "--arch", "maskrcnn_resnet18_fpn")  # 91 classes
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "shape mismatches" in r.stderr and "num_classes" in r.stderr
