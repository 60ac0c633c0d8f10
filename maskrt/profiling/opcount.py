"""Count the PyTorch operators a forward dispatches, and find the ones that make the host wait for the device.

On CUDA every operator is at least one host-side dispatch and usually a kernel launch, and some operators cannot
be enqueued without reading device data on the host first: their output shape depends on the data (``nonzero``,
``unique``, ``masked_select``, indexing with a boolean mask) or they return a Python value (``item``, ``bool(t)``,
``tolist``). Each of those is a synchronisation: the host stops queuing work until the device has caught up, and
a CUDA graph cannot hold it. Both can be counted on the CPU, where the same operators are dispatched:
:class:`OpCounter` is a ``TorchDispatchMode`` that records every ATen operator called inside it, split into the
ones called by maskrt's own custom operators (``torch.ops.maskrt.*``, whose device kernels are single launches)
and the others, and flags the data-dependent ones.

A host copy of a CPU tensor (``.cpu()``, ``.numpy()``, ``.tolist()``) dispatches nothing on the CPU; the guard
in the tests therefore also runs the forward on fake tensors (:func:`run_on_fake_tensors`), which have no data
to copy.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

# Operators whose output shape or value needs the data on the host (a device sync on CUDA).
DATA_DEPENDENT = frozenset({
    "nonzero", "_local_scalar_dense", "item", "is_nonzero", "_unique", "_unique2", "unique_dim",
    "unique_consecutive", "unique_dim_consecutive", "masked_select", "argwhere", "equal", "allclose",
    "_assert_async", "repeat_interleave", "nonzero_numpy", "tolist",
})
CUSTOM_NAMESPACE = "maskrt"


def _name(func) -> str:
    return func._schema.name.split("::", 1)[-1].split(".")[0] if hasattr(func, "_schema") else str(func)


def _has_bool_index(args) -> bool:
    indices = args[1] if len(args) > 1 else None
    if not isinstance(indices, (list, tuple)):
        return False
    return any(isinstance(t, torch.Tensor) and t.dtype in (torch.bool, torch.uint8) for t in indices)


def is_data_dependent(func, args, kwargs) -> bool:
    name = _name(func)
    if name in DATA_DEPENDENT:
        return True
    if name == "where" and len(args) + len(kwargs) == 1:  # torch.where(condition): nonzero
        return True
    if name in ("index", "index_put", "index_put_", "_index_put_impl_") and _has_bool_index(args):
        return True
    if name in ("_to_copy", "copy_", "to"):  # a copy between devices (host <-> device)
        devices = {t.device.type for t in list(args) + list(kwargs.values()) if isinstance(t, torch.Tensor)}
        target = kwargs.get("device")
        if target is not None:
            devices.add(torch.device(target).type)
        return len(devices) > 1
    return False


@dataclass
class OpCounts:
    """What one run dispatched. ``outside``/``inside``: operator name -> calls outside / inside maskrt's custom
    operators; ``views``: calls of view operators (no kernel) among ``outside``; ``data_dependent``: the
    data-dependent calls as ``(operator, where)`` with where "outside" or "inside"; ``custom``: custom op calls."""

    outside: Counter = field(default_factory=Counter)
    inside: Counter = field(default_factory=Counter)
    custom: Counter = field(default_factory=Counter)
    views: int = 0
    data_dependent: list = field(default_factory=list)

    @property
    def total_outside(self) -> int:
        return sum(self.outside.values())

    @property
    def total_inside(self) -> int:
        return sum(self.inside.values())

    def data_dependent_outside(self) -> list:
        return [name for name, where in self.data_dependent if where == "outside"]

    def data_dependent_inside(self) -> list:
        return [name for name, where in self.data_dependent if where == "inside"]

    def summary(self) -> dict:
        return {
            "ops_outside_custom_ops": self.total_outside,
            "views_outside_custom_ops": self.views,
            "ops_outside_excluding_views": self.total_outside - self.views,
            "custom_op_calls": dict(self.custom),
            "ops_inside_custom_ops_cpu_path": self.total_inside,
            "data_dependent_outside": dict(Counter(self.data_dependent_outside())),
            "data_dependent_inside_cpu_path": dict(Counter(self.data_dependent_inside())),
            "top_ops_outside": dict(self.outside.most_common(15)),
        }


class DataDependentOpError(AssertionError):
    pass


class OpCounter(TorchDispatchMode):
    """Count the ATen operators dispatched inside ``with OpCounter() as c:`` into ``c.counts`` (:class:`OpCounts`).

    ``strict=True`` raises :class:`DataDependentOpError` at the first data-dependent operator called outside
    maskrt's custom operators (their CPU implementations may use them; their CUDA kernels do not).
    """

    def __init__(self, strict: bool = False):
        super().__init__()
        self.strict = strict
        self.counts = OpCounts()
        self._inside = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        namespace = getattr(func, "namespace", "")
        if namespace == CUSTOM_NAMESPACE:
            self.counts.custom[_name(func)] += 1
            impl = _python_impl(func)
            if impl is None:
                return func(*args, **kwargs)
            with _InnerCounter(self.counts):
                return impl(*args, **kwargs)
        name = _name(func)
        self.counts.outside[name] += 1
        if getattr(func, "is_view", False):
            self.counts.views += 1
        if is_data_dependent(func, args, kwargs):
            self.counts.data_dependent.append((name, "outside"))
            if self.strict:
                raise DataDependentOpError(f"data-dependent operator aten.{name} called in the forward, outside "
                                           "maskrt's custom operators: it makes the host wait for the device")
        return func(*args, **kwargs)


def _python_impl(func):
    """The Python (CPU) implementation of a ``torch.library.custom_op``, to run under a counting mode."""
    try:
        from torch._library.custom_ops import OPDEFS
    except ImportError:  # pragma: no cover - older torch
        return None
    opdef = OPDEFS.get(func._schema.name)
    return getattr(opdef, "_init_fn", None) if opdef is not None else None


class _InnerCounter(TorchDispatchMode):
    """Counts what a custom operator's CPU implementation dispatches."""

    def __init__(self, counts: OpCounts):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = _name(func)
        self.counts.inside[name] += 1
        if is_data_dependent(func, args, kwargs):
            self.counts.data_dependent.append((name, "inside"))
        return func(*args, **kwargs)


def count_ops(fn: Callable, *args, strict: bool = False, **kwargs) -> tuple[object, OpCounts]:
    """Run ``fn(*args, **kwargs)`` under an :class:`OpCounter`; return its result and the counts."""
    with torch.no_grad(), OpCounter(strict=strict) as counter:
        out = fn(*args, **kwargs)
    return out, counter.counts


def run_on_fake_tensors(module: torch.nn.Module, *inputs: torch.Tensor):
    """Run ``module(*inputs)`` with fake tensors (shapes and dtypes, no data): any host read of device data in
    the forward outside the custom operators (``item``, ``bool``, ``tolist``, ``numpy``, shapes from data)
    raises there. Returns the fake outputs."""
    from torch._subclasses.fake_tensor import FakeTensorMode

    from maskrt.model.memory import fake_copy

    mode = FakeTensorMode(allow_non_fake_inputs=False)
    fake_module = fake_copy(module, mode)
    fake_inputs = [mode.from_tensor(t) for t in inputs]
    with torch.inference_mode(), mode:
        return fake_module(*fake_inputs)
