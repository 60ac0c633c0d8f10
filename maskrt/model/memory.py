"""How much memory a deploy forward needs, counted before it runs, so that a canvas too large for this machine is
refused with one line instead of the process being killed by the kernel's out-of-memory killer.

:func:`forward_peak_bytes` runs the forward on fake tensors (shapes and dtypes, no data: about half a second at
any size once warm) and counts the bytes of every tensor the forward's operators allocate while it is alive; the largest
sum is the peak. It leaves out allocator overhead and temporaries inside one operator, so on large canvases it is
below what the real forward takes: equal to the same count on real tensors, and 0.78 (shapes) and 0.94 (R50-FPN)
of a real forward's growth of peak resident memory (VmHWM) at 2048x2048 on the CPU (a rough reference: reused heap
and untouched zero pages do not show; tests/model/test_memory.py checks 0.5 to 1.5).
:func:`check_forward_memory` compares it with what this machine has available and refuses only when the count
alone does not fit, and only from :data:`CHECK_FROM_PIXELS` up.
"""

from __future__ import annotations

import weakref
from typing import Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from maskrt.core.errors import MaskrtError
from maskrt.core.formatting import human_bytes

#: Canvases below this many pixels (batch x H x W) are not counted: the largest preset needs under 2 GiB there.
CHECK_FROM_PIXELS = 4 * 2**20


def fake_copy(module: torch.nn.Module, mode) -> torch.nn.Module:
    """A deep copy of ``module`` whose parameters and buffers are fake tensors of ``mode`` (a FakeTensorMode)."""
    import copy

    fake = copy.deepcopy(module)
    for sub in fake.modules():
        for key, p in list(sub._parameters.items()):
            if p is not None:
                sub._parameters[key] = torch.nn.Parameter(mode.from_tensor(p.detach()), requires_grad=False)
        for key, b in list(sub._buffers.items()):
            if b is not None:
                sub._buffers[key] = mode.from_tensor(b)
    return fake


class LiveBytes(TorchDispatchMode):
    """Counts the bytes of the storages that operators return while any tensor on them is alive (views share
    their base's storage and count once); ``peak`` is the largest total seen."""

    def __init__(self):
        super().__init__()
        self.live = 0
        self.peak = 0
        self._refs: dict[int, list[int]] = {}  # storage -> [bytes, tensors alive on it]

    def _release(self, key: int) -> None:
        entry = self._refs[key]
        entry[1] -= 1
        if entry[1] == 0:
            del self._refs[key]
            self.live -= entry[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage._cdata
                entry = self._refs.get(key)
                if entry is None:
                    nbytes = storage.nbytes()
                    self._refs[key] = [nbytes, 1]
                    self.live += nbytes
                    self.peak = max(self.peak, self.live)
                else:
                    entry[1] += 1
                weakref.finalize(t, self._release, key)
        return out


def forward_peak_bytes(deploy: torch.nn.Module, batch: int, size: tuple[int, int]) -> int:
    """Peak bytes of the tensors ``deploy`` (a :class:`maskrt.model.DeployMaskRCNN`) allocates for ``batch``
    uint8 images of ``size`` (H, W), counted on fake tensors (nothing of that size is allocated)."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    h, w = size
    mode = FakeTensorMode(allow_non_fake_inputs=False)
    fake = fake_copy(deploy, mode).eval()
    device = next((p.device for p in deploy.parameters()), torch.device("cpu"))
    counter = LiveBytes()
    with torch.inference_mode(), mode:
        images = torch.empty((batch, 3, h, w), dtype=torch.uint8, device=device)
        sizes = torch.full((batch, 2), 0, dtype=torch.int32, device=device)
        with counter:
            fake(images, sizes)
    return counter.peak


def available_memory() -> Optional[int]:
    """Bytes this process can still get: MemAvailable plus free swap, capped by a cgroup v2 limit; None where
    that cannot be read (not Linux)."""
    info = {}
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                key, _, value = line.partition(":")
                info[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    if "MemAvailable" not in info:
        return None
    available = info["MemAvailable"] + info.get("SwapFree", 0)
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            current = int(f.read().strip())
        if limit != "max":
            available = min(available, max(int(limit) - current, 0))
    except (OSError, ValueError):
        pass
    return available


def check_forward_memory(deploy: torch.nn.Module, batch: int, size: tuple[int, int], *,
                         available: Optional[int] = None) -> None:
    """Refuse (MaskrtError, one line) a host-memory forward of ``batch`` images of ``size`` that cannot fit in
    this machine's memory (``available``: default :func:`available_memory`). Small canvases, unknown memory and a
    forward the fake run cannot follow are let through: this check never stops a forward that might fit."""
    h, w = size
    if batch * h * w < CHECK_FROM_PIXELS:
        return
    if available is None:
        available = available_memory()
    if available is None:
        return
    try:
        need = forward_peak_bytes(deploy, batch, (h, w))
    except Exception:  # an operator without a fake implementation: no estimate, no refusal
        return
    if need > available:
        raise MaskrtError(
            f"a {h}x{w} input at batch {batch} needs at least {human_bytes(need)} for the forward's tensors, more "
            f"than the {human_bytes(available)} of memory available here: use a smaller --input-size (or batch)")
