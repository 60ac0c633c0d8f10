"""maskrt's training losses and gradients against torchvision's, through benchmarks/torchvision_loss_parity.py.

torchvision cannot be imported next to the system's CPU torch, so the comparison runs in the reference
virtualenv as a subprocess (see tests/model/test_torchvision_parity.py); this module never imports torchvision.
"""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.model.test_torchvision_parity import REPO, SETUP, _torchvision_python

SCRIPT = REPO / "benchmarks" / "torchvision_loss_parity.py"


@pytest.mark.slow
def test_losses_and_gradients_match_torchvision(tmp_path):
    python = _torchvision_python()
    if python is None:
        pytest.skip(f"no python with torchvision: set MASKRT_TORCHVISION_PYTHON or run `bash {SETUP}`")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    out = tmp_path / "loss_parity.json"
    proc = subprocess.run([str(python), str(SCRIPT), "--json", str(out)], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data = json.loads(out.read_text())
    assert data["ok"] and len(data["losses"]) == 5 and len(data["gradients"]) >= 5
