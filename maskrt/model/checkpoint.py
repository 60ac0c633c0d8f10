"""Checkpoint reading and torchvision key-layout handling.

Reads ``.pth``/``.pt`` files with ``torch.load(weights_only=True)`` (never unpickling code) and
``.safetensors`` files. Older torchvision checkpoints name a few layers differently; those keys are renamed to
the current layout before loading:

* ``backbone.fpn.inner_blocks.N.weight`` -> ``backbone.fpn.inner_blocks.N.0.weight`` (and ``layer_blocks``)
* ``rpn.head.conv.weight`` -> ``rpn.head.conv.0.0.weight``
* ``roi_heads.mask_head.mask_fcnN.weight`` -> ``roi_heads.mask_head.{N-1}.0.weight``
"""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from typing import Any, Mapping, Optional

import torch
from torch import Tensor, nn

from maskrt.core.errors import MaskrtError

_LEGACY_RULES = [
    (re.compile(r"^(.*fpn\.(?:inner|layer)_blocks\.\d+)\.(weight|bias)$"), r"\1.0.\2"),
    (re.compile(r"^(.*rpn\.head\.conv)\.(weight|bias)$"), r"\1.0.0.\2"),
]
_MASK_FCN = re.compile(r"^(.*mask_head)\.mask_fcn(\d+)\.(weight|bias)$")
_SHOW = 5


def upgrade_state_dict(state_dict: Mapping[str, Any]) -> OrderedDict[str, Any]:
    """Rename legacy torchvision keys to the current layout; other keys pass through unchanged."""
    out: OrderedDict[str, Any] = OrderedDict()
    for key, value in state_dict.items():
        new = key
        for pattern, repl in _LEGACY_RULES:
            new = pattern.sub(repl, new)
        m = _MASK_FCN.match(new)
        if m:
            new = f"{m.group(1)}.{int(m.group(2)) - 1}.0.{m.group(3)}"
        out[new] = value
    return out


def _listing(title: str, items: list[str]) -> str:
    shown = ", ".join(items[:_SHOW])
    more = f", ... ({len(items) - _SHOW} more)" if len(items) > _SHOW else ""
    return f"{len(items)} {title}: {shown}{more}"


def state_dict_mismatch(model: nn.Module, state_dict: Mapping[str, Any]) -> Optional[str]:
    """A one-line description of how ``state_dict`` fails to fit ``model`` exactly, or None if it fits."""
    expected = model.state_dict()
    # FrozenBatchNorm2d ignores num_batches_tracked from BatchNorm2d-trained checkpoints.
    ignorable = {k for k in state_dict if k.endswith("num_batches_tracked") and k not in expected}
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected and k not in ignorable]
    shapes = [
        f"{k} {tuple(state_dict[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in state_dict and isinstance(state_dict[k], Tensor) and tuple(state_dict[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or shapes):
        return None
    parts = []
    if missing:
        parts.append(_listing("missing keys", missing))
    if unexpected:
        parts.append(_listing("unexpected keys", unexpected))
    if shapes:
        parts.append(_listing("shape mismatches", shapes))
    return "; ".join(parts)


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Any]) -> None:
    """Raise one MaskrtError if ``state_dict`` (already upgraded) does not fit ``model`` exactly."""
    problem = state_dict_mismatch(model, state_dict)
    if problem is not None:
        hint = ""
        if any("cls_score" in s for s in problem.split(";") if "shape" in s):
            hint = " (a different class count? pass num_classes to match the checkpoint)"
        raise MaskrtError(f"checkpoint does not fit the model: {problem}{hint}")


_GLOBAL = re.compile(r"Unsupported global: GLOBAL ([\w.]+)|([\w.]+) was not an allowed global")


def _starts_with(path: str, magic: bytes) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(magic)) == magic
    except OSError:
        return False


def load_weights_only(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """``torch.load(path, weights_only=True)`` on the CPU, with every failure as one MaskrtError line.

    torch's own message for a refused file is a paragraph (and it warns about pickle protocols on the way); this
    names the problem instead: a file that holds pickled Python objects beyond tensors and plain values, or one
    that is damaged, truncated or not a PyTorch file at all. Nothing is ever unpickled beyond weights.
    """
    import warnings
    import zipfile

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MaskrtError(f"{what} not found: {path}")
    fix = ("maskrt reads weights-only checkpoints and never unpickles code: save the state_dict "
           "(torch.save(model.state_dict(), path)) or use .safetensors")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return torch.load(path, map_location="cpu", weights_only=True)
    except KeyboardInterrupt:
        raise
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, OSError, EOFError, ... for bad files
        text = str(e)
        found = _GLOBAL.search(text)
        if found:
            reason = f"it holds a pickled Python object ({found.group(1) or found.group(2)}), not only tensors"
        elif path.lower().endswith((".onnx", ".engine", ".plan")):
            reason = "it is an exported model, not a checkpoint (weights come from a .pth or .safetensors file)"
        elif os.path.getsize(path) == 0:
            reason = "the file is empty"
        elif zipfile.is_zipfile(path) or "zip archive" in text or _starts_with(path, b"PK\x03\x04"):
            reason = "the file is damaged or truncated"
        elif _starts_with(path, b"\x80"):
            reason = "it is a plain Python pickle, which could run code when loaded"
        else:
            reason = "it is not a PyTorch checkpoint (damaged, truncated, or another kind of file)"
        raise MaskrtError(f"cannot read {what} {path}: {reason}; {fix}") from None


def read_state_dict(path: str | os.PathLike) -> OrderedDict[str, Tensor]:
    """Read a state_dict from ``.pth``/``.pt`` (plain, or under ``model``/``state_dict``) or ``.safetensors``.

    Keys are upgraded from legacy torchvision names. Raises MaskrtError for a missing, unreadable or
    non-weights file.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MaskrtError(f"checkpoint not found: {path}")
    if path.endswith(".safetensors"):
        try:
            from safetensors.torch import load_file
        except ImportError as e:  # pragma: no cover - safetensors is a dependency
            raise MaskrtError("reading .safetensors needs the safetensors package: pip install safetensors") from e
        try:
            data: Any = load_file(path)
        except Exception as e:
            raise MaskrtError(f"cannot read {path} as safetensors: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from e
    else:
        data = load_weights_only(path)
    if isinstance(data, Mapping):
        for key in ("model", "state_dict"):
            if key in data and isinstance(data[key], Mapping):
                data = data[key]
                break
    if not isinstance(data, Mapping) or not data or not all(isinstance(v, Tensor) for v in data.values()):
        raise MaskrtError(
            f"{path} does not hold a state_dict (a mapping of names to tensors, possibly under 'model' or "
            "'state_dict')"
        )
    return upgrade_state_dict(data)


def load_checkpoint(path: str | os.PathLike, model: Optional[nn.Module] = None):
    """Read a checkpoint; with ``model``, load it strictly and return the model, else return the state_dict.

    A mismatch raises one MaskrtError that lists missing keys, unexpected keys and shape mismatches (the first
    few of each and their counts).
    """
    state_dict = read_state_dict(path)
    if model is None:
        return state_dict
    check_state_dict(model, state_dict)
    model.load_state_dict(state_dict, strict=True)
    return model
