"""The host twin under AddressSanitizer: the maskrt_mlra_run driver (built with MASKRT_HOST_ASAN=ON) reads each
tensor into a heap block of exactly its size, so any read outside a feature map, the rois or the output aborts
the run with an ASan report. Inputs include RoIs far outside the maps, every FPN level and bad boxes."""

from __future__ import annotations

import os
import subprocess

import numpy as np
import pytest
import torch

from maskrt.ops.poolers import multilevel_roi_align
from maskrt.plugins import spec
from tests.plugins.helpers import SCALES, feature_maps, random_rois

ASAN_OPTIONS = "detect_leaks=0:abort_on_error=0:exitcode=99:halt_on_error=1"


def _run(asan_build, tmp_path, maps, rois, size, sampling_ratio, aligned, mode, scales=SCALES, out_shape=None):
    folder = tmp_path / f"case{len(os.listdir(tmp_path))}"
    folder.mkdir()
    fdt = 1 if maps[0].dtype == torch.float16 else 0
    rdt = 1 if rois.dtype == torch.float16 else 0
    lines = [f"{fdt} {rdt} {len(maps)} {sampling_ratio} {int(aligned)} {spec.MODES[mode]} 224 4"]
    for i, (m, s) in enumerate(zip(maps, scales)):
        path = folder / f"level{i}.bin"
        m.contiguous().numpy().tofile(path)
        lines.append(f"{path} {' '.join(str(d) for d in m.shape)} {s!r}")
    roi_path = folder / "rois.bin"
    rois.contiguous().numpy().tofile(roi_path)
    k = rois.shape[0]
    out_shape = out_shape or (k, maps[0].shape[1], *size)
    lines.append(f"{roi_path} {k} {rois.shape[1]}")
    lines.append(" ".join(str(d) for d in out_shape))
    (folder / "spec.txt").write_text("\n".join(lines) + "\n")
    out_path = folder / "out.bin"
    proc = subprocess.run([asan_build.driver, str(folder / "spec.txt"), str(out_path)], capture_output=True, text=True,
                          env={**os.environ, "ASAN_OPTIONS": ASAN_OPTIONS}, timeout=120, check=False)
    assert "AddressSanitizer" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode != 99, proc.stderr[-3000:]
    if proc.returncode != 0:
        return proc.returncode, None
    dtype = np.float16 if fdt else np.float32
    return 0, torch.from_numpy(np.fromfile(out_path, dtype=dtype).reshape(out_shape))


@pytest.fixture(scope="module")
def asan(asan_build):
    if asan_build.driver is None:
        pytest.skip("the AddressSanitizer driver was not built")
    return asan_build


def test_driver_is_instrumented(asan):
    with open(asan.driver, "rb") as f:
        assert b"__asan_init" in f.read()


@pytest.mark.parametrize("mode", ["avg", "max"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_asan_random_and_bad_boxes(asan, tmp_path, mode, dtype):
    maps = feature_maps(batch=2, channels=3, height=64, width=96, seed=11, dtype=dtype)
    rois = random_rois(60, batch=2, height=64, width=96, seed=11)
    nan, inf = float("nan"), float("inf")
    bad = torch.tensor([
        [0, nan, 1, 2, 3], [1, 0, 0, inf, 5], [2, 1, 1, 30, 30], [-3, 1, 1, 30, 30], [0, 50, 40, 10, 5],
        [1, -300, -300, 400, 400], [0, 95.9, 63.9, 96.0, 64.0], [1, -2, -2, -1, -1], [0, 0, 0, 0, 0],
    ])
    rois = torch.cat([rois, bad])
    for aligned, sampling_ratio in ((False, 2), (True, 0), (True, -1), (False, 3)):
        status, got = _run(asan, tmp_path, maps, rois, (5, 4), sampling_ratio, aligned, mode)
        assert status == 0
        want = multilevel_roi_align(maps, rois, (5, 4), sampling_ratio, scales=SCALES, aligned=aligned, mode=mode)
        assert torch.equal(got, want)


def test_asan_edge_shapes(asan, tmp_path):
    maps = feature_maps(batch=1, channels=2, height=8, width=8, seed=12)  # 2x2, 1x1, 1x1, 1x1 maps
    rois = random_rois(20, batch=1, height=8, width=8, seed=12)
    status, got = _run(asan, tmp_path, maps, rois, (7, 7), 0, True, "avg")
    assert status == 0
    want = multilevel_roi_align(maps, rois, (7, 7), 0, scales=SCALES, aligned=True)
    assert torch.equal(got, want)
    status, got = _run(asan, tmp_path, maps, rois[:0], (7, 7), 2, False, "max")  # no RoIs
    assert status == 0 and got.shape == (0, 2, 7, 7)


def test_asan_shape_mismatch_is_an_error_without_access(asan, tmp_path):
    maps = feature_maps(batch=2, channels=3, height=32, width=32, seed=13)
    rois = random_rois(5, batch=2, height=32, width=32, seed=13)
    status, _ = _run(asan, tmp_path, maps, rois, (3, 3), 2, False, "avg", out_shape=(6, 3, 3, 3))
    assert status == spec.ERR_SHAPE
    status, _ = _run(asan, tmp_path, maps, rois[:, :4], (3, 3), 2, False, "avg")
    assert status == spec.ERR_SHAPE
