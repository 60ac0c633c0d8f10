"""CUDA graphs for the deploy forward, piece by piece.

The deploy forward has static shapes, but its NMS and multi-level RoI pooling choose work from the data (they
read keep masks and level counts back to the host), which a CUDA graph cannot hold. So the forward is captured
piecewise: every network piece whose input shapes are fixed (the backbone with its FPN, the RPN head, the box
head and predictor, the mask head and predictor) is captured once per input shape and replayed; the data-driven
glue between them runs eagerly. The pieces are where nearly all kernel launches are, which is what graphs save.

``GraphedModule`` wraps one module: the first call with a given input signature warms the module up on a side
stream and captures it; later calls copy the inputs into the captured (static) input tensors, replay, and
return the static outputs. Those outputs are overwritten by the next replay: the callers here consume them (or
copy them with ``.float()``) before the next forward, which is what makes the reuse safe.

:func:`graph_whole` captures the whole deploy forward instead, which the torch runner uses when maskrt's CUDA
kernels are registered (the forward is then free of host synchronisations).

``mode="emulate"`` runs the same bookkeeping on any device without CUDA (the module is simply called into the
static outputs), so the wiring is tested on CPU; ``mode="cuda"`` uses ``torch.cuda.CUDAGraph``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.utils import _pytree as pytree

from maskrt.core.errors import MaskrtError
from maskrt.model.region import ValidRegion

GRAPHED_PIECES = ("backbone", "rpn.head", "roi_heads.box_head", "roi_heads.box_predictor", "roi_heads.mask_head",
                  "roi_heads.mask_predictor")


# A ValidRegion passed to a piece flattens to its extents tensor (copied into the captured input on each replay);
# its canvas size is part of the signature, so one capture serves every batch of that canvas.
pytree.register_pytree_node(ValidRegion, lambda r: ([r.extents], tuple(int(v) for v in r.canvas)),
                            lambda leaves, canvas: ValidRegion(leaves[0], canvas))


class _Captured:
    def __init__(self, static_inputs, static_outputs, graph):
        self.static_inputs = static_inputs
        self.static_outputs = static_outputs
        self.graph = graph


class GraphedModule(nn.Module):
    """Capture ``module`` into a CUDA graph per input signature and replay it (see the module docstring)."""

    def __init__(self, module: nn.Module, mode: str = "cuda", warmup: int = 2):
        super().__init__()
        if mode not in ("cuda", "emulate"):
            raise ValueError(f"mode must be cuda or emulate, got {mode!r}")
        self.module = module
        self.mode = mode
        self.warmup = warmup
        self._captures: dict = {}
        self.replays = 0

    @staticmethod
    def _signature(flat) -> tuple:
        return tuple((tuple(t.shape), t.dtype, str(t.device)) if isinstance(t, torch.Tensor) else ("py", t) for t in flat)

    def forward(self, *args):
        flat, spec = pytree.tree_flatten(args)
        key = (self._signature(flat), spec)
        cap = self._captures.get(key)
        if cap is None:
            cap = self._capture(flat, spec)
            self._captures[key] = cap
        for dst, src in zip(cap.static_inputs, flat):
            if isinstance(dst, torch.Tensor):
                dst.copy_(src)
        self._replay(cap, spec)
        self.replays += 1
        return cap.static_outputs

    @staticmethod
    def _device(flat):
        for t in flat:
            if isinstance(t, torch.Tensor) and t.device.type == "cuda":
                return t.device
        return torch.device("cuda", torch.cuda.current_device())

    def _capture(self, flat, spec) -> _Captured:
        static = [t.clone() if isinstance(t, torch.Tensor) else t for t in flat]
        args = pytree.tree_unflatten(static, spec)
        if self.mode == "emulate":
            return _Captured(static, self.module(*args), None)
        with torch.cuda.device(self._device(flat)):  # the inputs' device (cuda:1 ...), not the current one
            return self._capture_cuda(static, args)

    def _capture_cuda(self, static, args) -> _Captured:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(self.warmup):
                self.module(*args)
            self._probe_sync_free(args)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph):
                outputs = self.module(*args)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MaskrtError(f"CUDA graph capture of {type(self.module).__name__} failed: {first}; run without "
                              "--cuda-graph") from e
        return _Captured(static, outputs, graph)

    def _probe_sync_free(self, args) -> None:
        """Run the module once more with PyTorch's synchronising operations made errors. A capture that meets one
        fails, and before PyTorch 2.12 a failed capture can leave the caching allocator unable to capture again in
        the process (its capture is never closed); found here, the failure costs nothing."""
        previous = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            self.module(*args)
        except RuntimeError as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise MaskrtError(f"{type(self.module).__name__} cannot be captured in a CUDA graph: it waits for the GPU "
                              f"on the host ({first}); run without --cuda-graph") from e
        finally:
            torch.cuda.set_sync_debug_mode(previous)

    def _replay(self, cap: _Captured, spec) -> None:
        if self.mode == "cuda":
            with torch.cuda.device(self._device(cap.static_inputs)):
                cap.graph.replay()
            return
        # Emulation: recompute into the same static output tensors, as a replay would.
        fresh = self.module(*pytree.tree_unflatten(cap.static_inputs, spec))
        for dst, src in zip(pytree.tree_leaves(cap.static_outputs), pytree.tree_leaves(fresh)):
            dst.copy_(src)


def graph_pieces(model: nn.Module, mode: str = "cuda", warmup: int = 2) -> nn.Module:
    """A copy of a :class:`maskrt.model.MaskRCNN` whose fixed-shape pieces (``GRAPHED_PIECES``) are
    :class:`GraphedModule` s. Weights are shared with ``model``; only the module tree is copied."""
    graphed = copy.copy(model)
    graphed._modules = dict(model._modules)
    for path in GRAPHED_PIECES:
        parent_path, _, name = path.rpartition(".")
        parent = graphed
        if parent_path:
            # Shallow-copy each parent on the way so the original model keeps its plain modules.
            for part in parent_path.split("."):
                child = copy.copy(parent._modules[part])
                child._modules = dict(child._modules)
                parent._modules[part] = child
                parent = child
        parent._modules[name] = GraphedModule(parent._modules[name], mode=mode, warmup=warmup)
    return graphed


def graph_whole(deploy: nn.Module, mode: str = "cuda", warmup: int = 2) -> GraphedModule:
    """The whole deploy forward (:class:`maskrt.model.DeployMaskRCNN`) as one CUDA graph per input shape.

    Possible when the forward never reads device data on the host: true outside maskrt's custom ops (checked by
    tests/model/test_sync_free.py), and inside them once their CUDA kernels are registered
    (:func:`maskrt.ops.cuda_kernels.register_cuda_kernels`). The outputs are static tensors overwritten by the next
    replay: copy them (``.clone()``, ``.cpu()``) before running again."""
    return GraphedModule(deploy, mode=mode, warmup=warmup)


def graphed_modules(model: nn.Module) -> list[GraphedModule]:
    return [m for m in model.modules() if isinstance(m, GraphedModule)]
