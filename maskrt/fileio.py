"""Small file helpers shared by the commands: output folders that must be writable, and atomic text writes."""

from __future__ import annotations

import os

from maskrt.errors import MaskrtError


def ensure_writable_folder(folder: str) -> None:
    """Create ``folder`` if needed and check a file can be written in it; MaskrtError (one line) otherwise."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe = os.path.join(folder, ".maskrt-write-test")
        with open(probe, "w"):
            pass
        os.unlink(probe)
    except OSError as e:
        raise MaskrtError(f"cannot write to output folder {folder}: {e.strerror}") from None


def write_text_atomic(path: str, text: str) -> str:
    """Write ``text`` to a temporary name next to ``path``, then rename it into place."""
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise MaskrtError(f"cannot write {path}: {e.strerror}") from None
    return path
