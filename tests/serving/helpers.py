"""Shared pieces of the serving tests: encoded shapes scenes and what this machine has for Triton."""

from __future__ import annotations

import io
import os
import pathlib
import socket

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHAPES_WEIGHTS = str(ROOT / "maskrt" / "model" / "weights" / "shapes.safetensors")


def scene_png(index: int, seed: int = 1000) -> bytes:
    """Held-out shapes scene ``index`` as PNG bytes."""
    from PIL import Image

    from maskrt.data.shapes import make_scene

    buffer = io.BytesIO()
    Image.fromarray(make_scene(seed, index).image).save(buffer, format="PNG")
    return buffer.getvalue()


CORRUPT = {
    "text": b"this is not an image",
    "empty": b"",
    "truncated png": None,  # filled from a real PNG below
    "random bytes": np.random.default_rng(0).integers(0, 256, 2048, dtype=np.uint8).tobytes(),
}


def corrupt_payloads() -> dict:
    out = dict(CORRUPT)
    out["truncated png"] = scene_png(0)[:300]
    return out


def free_ports(count: int) -> list[int]:
    """Ports nothing listens on now (bound to port 0 on the loopback, then released)."""
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


def triton_missing() -> str | None:
    """Why a real Triton server cannot run here (None when it can)."""
    from maskrt.core.errors import MaskrtError
    from maskrt.serving.tritonserver import check_stub_numpy, find_tritonserver

    try:
        import tritonclient.http  # noqa: F401
    except ImportError:
        return 'tritonclient is not installed (pip install "maskrt[serve]")'
    try:
        find_tritonserver()
        check_stub_numpy()
    except MaskrtError as e:
        return str(e)
    return None


def env_with_root() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env
