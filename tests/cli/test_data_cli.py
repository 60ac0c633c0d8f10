"""``maskrt data shapes``: writes the dataset, one-line errors on bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from maskrt.cli.app import cli

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "maskrt", *args], capture_output=True, text=True, timeout=300,
                          cwd=REPO)


def _error_line(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    return lines[0]


def test_shapes_writes_dataset(tmp_path):
    out = tmp_path / "ds"
    r = run("data", "shapes", "--count", "4", "--seed", "5", "--out", str(out))
    assert r.returncode == 0, r.stdout + r.stderr
    data = json.loads((out / "annotations.json").read_text())
    n = len(data["annotations"])
    assert f"wrote 4 images and {n} instances" in r.stdout
    for name in ("circle", "rectangle", "triangle", "star"):
        assert name in r.stdout
    assert sorted(os.listdir(out / "images")) == [f"5_{i:06d}.png" for i in range(4)]
    assert [c["name"] for c in data["categories"]] == ["circle", "rectangle", "triangle", "star"]


def test_shapes_with_progress_bar(tmp_path):
    r = CliRunner().invoke(cli, ["data", "shapes", "--count", "50", "--out", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert "wrote 50 images" in r.output
    assert len(os.listdir(tmp_path / "images")) == 50


def test_shapes_bad_input(tmp_path):
    assert "--count" in _error_line(run("data", "shapes", "--count", "0", "--out", str(tmp_path / "a")))
    assert not (tmp_path / "a").exists()
    assert "--seed" in _error_line(run("data", "shapes", "--count", "1", "--seed", "-1", "--out", str(tmp_path / "a")))
    (tmp_path / "file").write_text("x")
    assert "existing file" in _error_line(run("data", "shapes", "--count", "1", "--out", str(tmp_path / "file")))
    assert "cannot write" in _error_line(run("data", "shapes", "--count", "1", "--out", str(tmp_path / "file" / "d")))
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write to read-only folders")
def test_shapes_unwritable_folder(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert "cannot write" in _error_line(run("data", "shapes", "--count", "1", "--out", str(locked / "ds")))
        assert not (locked / "ds").exists()
    finally:
        locked.chmod(0o700)
