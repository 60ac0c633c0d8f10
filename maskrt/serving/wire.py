"""The frames the served model and its worker exchange over a pipe: length-prefixed, numpy arrays as raw bytes.

This module is copied beside the python-backend ``model.py`` of ``maskrt serve`` and imported there too, inside
Triton's stub interpreter (numpy < 2, no torch), so it uses the standard library and numpy only, and nothing of
numpy that differs between 1.x and 2.x (no pickles: those name numpy's private modules).

A message is ``u32 header length | header (JSON) | blob 1 | blob 2 ...``, each blob ``u64 length | bytes``. The
header is any JSON object; :func:`pack_arrays` / :func:`unpack_arrays` describe arrays in it under ``"arrays"``
(name, dtype, shape) in the order of their blobs.
"""

from __future__ import annotations

import json
import struct

import numpy as np

_U32 = struct.Struct(">I")
_U64 = struct.Struct(">Q")


class WireClosed(EOFError):
    """The other side closed the pipe (between messages, or in the middle of one)."""


def _read_exact(stream, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            raise WireClosed(f"pipe closed with {left} of {size} bytes unread")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def write_message(stream, header: dict, blobs=()) -> None:
    """Write one message and flush."""
    head = json.dumps(header, separators=(",", ":")).encode("utf-8")
    parts = [_U32.pack(len(head)), head]
    for blob in blobs:
        blob = bytes(blob)
        parts += [_U64.pack(len(blob)), blob]
    stream.write(b"".join(parts))
    stream.flush()


def read_message(stream, blob_count=None) -> tuple[dict, list]:
    """Read one message: (header, blobs). The number of blobs is ``header["blobs"]`` (written by
    :func:`send`), or ``blob_count``."""
    first = stream.read(_U32.size)
    if not first:
        raise WireClosed("pipe closed")
    if len(first) < _U32.size:
        first += _read_exact(stream, _U32.size - len(first))
    header = json.loads(_read_exact(stream, _U32.unpack(first)[0]).decode("utf-8"))
    count = header.get("blobs", 0) if blob_count is None else blob_count
    blobs = [_read_exact(stream, _U64.unpack(_read_exact(stream, _U64.size))[0]) for _ in range(count)]
    return header, blobs


def send(stream, header: dict, blobs=()) -> None:
    """:func:`write_message` with the blob count in the header (read back by :func:`read_message`)."""
    blobs = list(blobs)
    write_message(stream, {**header, "blobs": len(blobs)}, blobs)


def pack_arrays(arrays: dict) -> tuple[list, list]:
    """{name: array} -> (descriptions for the header, blobs). Object arrays of bytes (Triton BYTES) are sent as
    a u32 length before each element."""
    described, blobs = [], []
    for name, array in arrays.items():
        array = np.asarray(array)
        if array.dtype == np.object_:
            items = [bytes(x) for x in array.reshape(-1)]
            blob = b"".join(_U32.pack(len(x)) + x for x in items)
            described.append({"name": name, "dtype": "bytes", "shape": list(array.shape)})
        else:
            blob = np.ascontiguousarray(array).tobytes()
            described.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)})
        blobs.append(blob)
    return described, blobs


def unpack_arrays(described: list, blobs: list) -> dict:
    """The inverse of :func:`pack_arrays` (arrays are copies, writable)."""
    out = {}
    for desc, blob in zip(described, blobs):
        shape = tuple(desc["shape"])
        if desc["dtype"] == "bytes":
            items, at = [], 0
            while at < len(blob):
                size = _U32.unpack_from(blob, at)[0]
                items.append(blob[at + 4 : at + 4 + size])
                at += 4 + size
            array = np.empty(len(items), dtype=np.object_)
            array[:] = items
            out[desc["name"]] = array.reshape(shape)
        else:
            out[desc["name"]] = np.frombuffer(blob, dtype=np.dtype(desc["dtype"])).reshape(shape).copy()
    return out
