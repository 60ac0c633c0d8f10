"""Files that are either complete or absent: the one atomic writer, and output paths checked before any work.

Every file maskrt writes (ONNX exports, engines and sidecars, reports, predictions, weights, pictures) goes
through :func:`atomic_write` or :func:`atomic_output`: the data goes to a temporary file in the destination's
folder, which is renamed over the destination only when it is complete. On any failure, Ctrl-C included, the
temporary file is removed and an existing destination is left as it was. The temporary file is created with
mode 0666 minus the umask, so outputs get the same permissions as any other file the user creates (0644 under
umask 022), not the 0600 of ``tempfile.mkstemp``.

:func:`check_output_file` and :func:`ensure_writable_folder` validate where a command will write before it
starts working, and refuse to overwrite one of its inputs.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from typing import Iterable, Iterator, Optional, Union

from maskrt.core.errors import MaskrtError

PathLike = Union[str, os.PathLike]


def _temporary_name(path: str) -> str:
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _require_folder(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MaskrtError(f"cannot write {path}: folder {folder} does not exist")
    return folder


@contextlib.contextmanager
def atomic_output(path: PathLike) -> Iterator[str]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block ends without an exception.

    For writers that take a file name (``PIL.Image.save``, ``torch.save``, ``onnx.save``). The temporary file
    exists (empty) when the block starts, with the umask's permissions; the writer may overwrite it. On any
    exception, KeyboardInterrupt included, it is removed and the exception goes on.
    """
    path = os.fspath(path)
    _require_folder(path)
    if os.path.isdir(path):
        raise MaskrtError(f"cannot write {path}: it is a folder; give a file name")
    tmp = _temporary_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as e:
        raise MaskrtError(f"cannot write {path}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode & 0o777  # 0666 minus the umask, as any file the user creates
    os.close(fd)
    try:
        yield tmp
        if os.stat(tmp).st_mode & 0o777 != mode:  # writers that replace the file (safetensors: 0600) lose it
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise MaskrtError(f"cannot write {path}: {e.strerror or e}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path: PathLike, data: Union[bytes, str], encoding: str = "utf-8") -> str:
    """Write ``data`` (bytes, or text in ``encoding``) to ``path`` atomically; return the path."""
    payload = data.encode(encoding) if isinstance(data, str) else bytes(data)
    with atomic_output(path) as tmp:
        with open(tmp, "wb") as f:
            f.write(payload)
    return os.fspath(path)


def write_text_atomic(path: PathLike, text: str) -> str:
    """:func:`atomic_write` for text (UTF-8)."""
    return atomic_write(path, text)


def ensure_writable_folder(folder: PathLike) -> str:
    """Create ``folder`` if needed and check a file can be written in it; MaskrtError (one line) otherwise."""
    folder = os.fspath(folder)
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise MaskrtError(f"output folder {folder} is an existing file; give a folder")
    try:
        os.makedirs(folder, exist_ok=True)
        probe = _temporary_name(os.path.join(folder, "write-test"))
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise MaskrtError(f"cannot write to output folder {folder}: {e.strerror or e}") from None
    return folder


def check_output_folder(folder: PathLike, option: str = "output folder") -> None:
    """Refuse, before any work starts and without creating anything, an output folder that cannot be made or
    written: an existing file, or a folder whose nearest existing ancestor is a file or not writable."""
    folder = os.path.abspath(os.fspath(folder))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise MaskrtError(f"{option} {folder} is an existing file; give a folder")
    existing = folder
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise MaskrtError(f"cannot write to output folder {folder} ({option}): {existing} is a file")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise MaskrtError(f"cannot write to output folder {folder} ({option}): {existing} is not writable")


def same_file(a: PathLike, b: PathLike) -> bool:
    """True when ``a`` and ``b`` name the same existing file (or the same absolute path)."""
    a, b = os.fspath(a), os.fspath(b)
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.abspath(a) == os.path.abspath(b)


def check_output_file(path: Optional[PathLike], option: str = "output", inputs: Iterable[PathLike] = ()) -> None:
    """Refuse, before any work starts, an output file that cannot be written or would overwrite an input.

    ``option`` names the command-line option in the message (e.g. ``--json``). None is accepted (no output).
    """
    if path is None:
        return
    path = os.fspath(path)
    if os.path.isdir(path):
        raise MaskrtError(f"{option} {path} is a folder; give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise MaskrtError(f"cannot write {option} {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise MaskrtError(f"cannot write {option} {path}: folder {folder} is not writable")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise MaskrtError(f"cannot write {option} {path}: the file is read-only")
    for source in inputs:
        if source is not None and os.path.exists(os.fspath(source)) and same_file(path, source):
            raise MaskrtError(f"{option} {path} is one of the inputs; choose another name (maskrt never overwrites "
                              "its input)")
