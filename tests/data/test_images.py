"""Image reading: every common PNG mode becomes (3, H, W) uint8 RGB; bad files give MaskrtError."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from maskrt import MaskrtError
from maskrt.data.images import read_image, synthetic_image


def test_rgb_roundtrip(tmp_path):
    arr = np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    Image.fromarray(arr).save(tmp_path / "a.png")
    t = read_image(tmp_path / "a.png")
    assert t.shape == (3, 20, 30) and t.dtype == torch.uint8
    assert np.array_equal(t.permute(1, 2, 0).numpy(), arr)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1"])
def test_modes_convert_to_rgb(tmp_path, mode):
    Image.new(mode, (17, 9)).save(tmp_path / "m.png")
    t = read_image(tmp_path / "m.png")
    assert t.shape == (3, 9, 17) and t.dtype == torch.uint8


def test_sixteen_bit_is_scaled(tmp_path):
    arr = np.full((5, 6), 65535, dtype=np.uint16)
    arr[0, 0] = 0
    Image.fromarray(arr).save(tmp_path / "d.png")
    t = read_image(tmp_path / "d.png")
    assert t.shape == (3, 5, 6)
    assert int(t[0, 1, 1]) == 255 and int(t[0, 0, 0]) == 0


def test_corrupt_and_missing(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(MaskrtError, match="cannot read image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(MaskrtError, match="not found"):
        read_image(tmp_path / "none.png")


def test_synthetic_image_is_deterministic():
    a, b, c = synthetic_image(40, 50, 1), synthetic_image(40, 50, 1), synthetic_image(40, 50, 2)
    assert a.shape == (3, 40, 50) and a.dtype == torch.uint8
    assert torch.equal(a, b) and not torch.equal(a, c)
