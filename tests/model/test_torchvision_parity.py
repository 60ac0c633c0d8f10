"""maskrt against torchvision itself, through benchmarks/torchvision_parity.py --quick.

torchvision cannot be imported next to the system's CPU torch, so the comparison runs in a separate virtualenv
(created by benchmarks/setup_torchvision_venv.sh) as a subprocess; this module never imports torchvision.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "torchvision_parity.py"
SETUP = "benchmarks/setup_torchvision_venv.sh"


def _torchvision_python() -> Path | None:
    env = os.environ.get("MASKRT_TORCHVISION_PYTHON")
    candidates = [Path(env)] if env else []
    candidates.append(REPO / ".venv-torchvision" / "bin" / "python")
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    return None


@pytest.mark.slow
def test_matches_torchvision_quick(tmp_path):
    python = _torchvision_python()
    if python is None:
        pytest.skip(
            "no python with torchvision: set MASKRT_TORCHVISION_PYTHON, or create .venv-torchvision with "
            f"`bash {SETUP}` (downloads about 5 GB)"
        )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    out_json = tmp_path / "torchvision_parity_quick.json"
    proc = subprocess.run(
        [str(python), str(SCRIPT), "--quick", "--json", str(out_json)],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=3600,
    )
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout)
    assert proc.returncode == 0, f"{SCRIPT.name} --quick exited with {proc.returncode}:\n{proc.stdout}"
    assert out_json.is_file()
