"""``TorchRunner``: the deploy forward of an eager model under the runner contract."""

from __future__ import annotations

from typing import Optional

from maskrt.backends.base import OUTPUT_NAMES, Capabilities, Runner, TensorSpec, contract_output_specs
from maskrt.core.errors import MaskrtError
from maskrt.core.parsing import parse_size


class TorchRunner(Runner):
    """The deploy forward of a :class:`maskrt.model.MaskRCNN` in PyTorch, on CPU or CUDA.

    Args:
        model: the eager model (weights loaded).
        input_size: (H, W) of the uint8 input (the export size).
        batch: fixed batch size, or None for any.
        device: "cpu" or "cuda[:N]".
        precision: "fp32", or "fp16" (half network, fp32 post-processing; meant for CUDA).
        class_names: the model's class names (background first) when it has none of its own.
        cuda_graph: replay the deploy forward from CUDA graphs (see :mod:`maskrt.backends.torch.cuda_graphs`);
            CUDA only. The whole forward is one graph when maskrt's CUDA kernels are registered (no host sync
            anywhere in it), otherwise its network pieces are. ``"whole"`` or ``"pieces"`` choose explicitly.
        fold_batchnorm: fold BatchNorm into the convolutions (fewer launches; equal up to float rounding). Default:
            on CUDA only, so that the CPU runner computes exactly what the eager model does.
        cuda_kernels: register maskrt's CUDA kernels for the custom ops (compiled on first use); on CUDA only.
            When they cannot be built, a note says so and the ops' PyTorch implementations run.
        dynamic_size: take any canvas size (multiples of ``size_divisible`` up to the resize rule's largest side),
            as a ``--dynamic-size`` export does; ``input_size`` is then only the size it is timed at.
    """

    backend = "torch"

    def __init__(self, model, input_size=(800, 1344), batch: Optional[int] = 1, device: str = "cpu",
                 precision: str = "fp32", class_names=None, cuda_graph=False, dynamic_size: bool = False,
                 fold_batchnorm: Optional[bool] = None, cuda_kernels: bool = True):
        super().__init__(f"torch:{getattr(model, 'preset', 'model')}")
        if precision not in ("fp32", "fp16"):
            raise MaskrtError(f"precision must be fp32 or fp16, got {precision!r}")
        if cuda_graph and not str(device).startswith("cuda"):
            raise MaskrtError("CUDA graphs need --device cuda")
        from maskrt.model.meta import model_meta

        self.model = model
        self.input_size = parse_size(input_size)
        self.device = str(device)
        self.precision = precision
        if cuda_graph not in (False, True, "whole", "pieces"):
            raise MaskrtError(f"cuda_graph must be a bool, 'whole' or 'pieces', got {cuda_graph!r}")
        self.cuda_graph = cuda_graph
        self.graph_mode: Optional[str] = None  # "whole" or "pieces" once active with CUDA graphs
        self.dynamic_size = dynamic_size
        cuda = str(device).startswith("cuda")
        self.fold_batchnorm = cuda if fold_batchnorm is None else bool(fold_batchnorm)
        self.cuda_kernels = bool(cuda_kernels) and cuda
        self.kernels_registered = False
        self.meta = model_meta(model, self.input_size, batch, precision, class_names=class_names,
                               dynamic_size=dynamic_size)
        self._batch = batch
        self._deploy = None
        self.capabilities = Capabilities(device_timing=cuda, allocator_stats=cuda, cuda_graph=bool(cuda_graph))

    def input_specs(self):
        size = (None, None) if self.dynamic_size else self.input_size
        return {"images": TensorSpec("uint8", (self._batch, 3, *size)),
                "image_sizes": TensorSpec("int32", (self._batch, 2))}

    def output_specs(self):
        return contract_output_specs(self._batch, self.meta.max_detections, self.meta.mask_size)

    def _activate_impl(self):
        import torch

        from maskrt.model import DeployMaskRCNN

        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise MaskrtError("--device cuda was asked for but torch sees no CUDA device; use --device cpu")
        self.model.eval()
        if self.cuda_kernels:
            from maskrt.core.errors import MaskrtWarning
            from maskrt.ops.cuda_kernels import register_cuda_kernels

            try:
                self.kernels_registered = register_cuda_kernels()
            except MaskrtError as e:
                import warnings

                self.notes.append(str(e))
                warnings.warn(str(e), MaskrtWarning, stacklevel=2)
        deploy = DeployMaskRCNN(self.model, self.precision, dynamic_size=self.dynamic_size,
                                fold_batchnorm=self.fold_batchnorm).to(self.device).eval()
        if not self.device.startswith("cuda"):
            from maskrt.model.memory import check_forward_memory

            check_forward_memory(deploy, self._batch or 1, self.input_size)
        if self.precision == "fp16" and self.device.startswith("cuda"):
            # Tensor-core convolutions want NHWC; inputs follow the weights' layout from the first conv on.
            deploy = deploy.to(memory_format=torch.channels_last)
        if self.cuda_graph:
            from maskrt.backends.torch.cuda_graphs import graph_pieces, graph_whole

            mode = self.cuda_graph if isinstance(self.cuda_graph, str) else (
                "whole" if self.kernels_registered else "pieces")
            if mode == "whole":
                deploy = graph_whole(deploy, mode="cuda")
            else:
                deploy.model = graph_pieces(deploy.model, mode="cuda")
            self.graph_mode = mode
            self.notes.append(f"CUDA graphs: {mode} forward")
        self._deploy = deploy

    def _deactivate_impl(self):
        self._deploy = None

    def synchronize(self):
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize(self.device)

    @property
    def cuda_stream(self):
        if not self.device.startswith("cuda"):
            return None
        import torch

        return torch.cuda.current_stream(self.device)

    def _upload_impl(self, feeds):
        import torch

        return tuple(torch.as_tensor(feeds[name]).to(self.device, non_blocking=True)
                     for name in ("images", "image_sizes"))

    def _execute_impl(self, inputs):
        import torch

        if self.device.startswith("cuda"):
            with torch.cuda.device(self.device), torch.inference_mode():
                return self._deploy(*inputs)
        with torch.inference_mode():
            return self._deploy(*inputs)

    def _download_impl(self, outputs):
        return {name: t.cpu() for name, t in zip(OUTPUT_NAMES, outputs)}

    def device_outputs(self, outputs) -> dict:
        if self.graph_mode == "whole":  # static graph outputs: the next replay overwrites them
            return {name: t.clone() for name, t in zip(OUTPUT_NAMES, outputs)}
        return dict(zip(OUTPUT_NAMES, outputs))  # fresh tensors each forward: no copy needed
