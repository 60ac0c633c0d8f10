"""The assembled Mask R-CNN: eager forward equal to torchvision's, and a static-shape deploy forward."""

from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from maskrt.core.errors import MaskrtError
from maskrt.model import transform as T
from maskrt.model.backbone import BackboneWithFPN
from maskrt.model.region import ValidRegion
from maskrt.model.roi_heads import RoIHeads
from maskrt.model.rpn import RegionProposalNetwork
from maskrt.ops.poolers import infer_scale

POOLED_LEVELS = 4  # RoI pooling uses P2..P5; the extra "pool" level only feeds the RPN.


class MaskRCNN(nn.Module):
    """Mask R-CNN with an FPN backbone.

    ``model.eval(); model([img, ...])`` takes (3, H, W) float RGB images in [0, 1] and returns one dict per
    image: ``boxes`` (N, 4) float XYXY in original-image pixels, ``labels`` (N,) int64, ``scores`` (N,),
    ``masks`` (N, 1, H, W) float probabilities pasted into the original image.
    """

    def __init__(self, backbone: BackboneWithFPN, rpn: RegionProposalNetwork, roi_heads: RoIHeads, *,
                 min_size=800, max_size: int = 1333, image_mean: Optional[Sequence[float]] = None,
                 image_std: Optional[Sequence[float]] = None, size_divisible: int = 32,
                 fixed_size: Optional[tuple[int, int]] = None, num_classes: int = 91, preset: str = "custom"):
        super().__init__()
        self.backbone = backbone
        self.rpn = rpn
        self.roi_heads = roi_heads
        self.min_size = tuple(min_size) if isinstance(min_size, (list, tuple)) else (int(min_size),)
        self.max_size = int(max_size)
        self.image_mean = list(image_mean) if image_mean is not None else [0.485, 0.456, 0.406]
        self.image_std = list(image_std) if image_std is not None else [0.229, 0.224, 0.225]
        self.size_divisible = int(size_divisible)
        self.fixed_size = fixed_size
        self.num_classes = int(num_classes)
        self.preset = preset
        self.class_names: Optional[list[str]] = None  # set by presets that know their classes (background first)

    # -- the shared fixed-shape core ---------------------------------------------------------------------
    def detect(self, x: Tensor, image_sizes, region=None) -> dict[str, Tensor]:
        """Detections on a normalised, padded batch.

        Args:
            x: (B, 3, H, W) normalised float batch, H and W multiples of ``size_divisible``.
            image_sizes: B pairs (height, width) of the valid region of each image (python ints), or a (B, 2)
                int tensor of them.
            region: a :class:`maskrt.model.region.ValidRegion` (the deploy forward): every image is computed as if
                it were alone, whatever the padding around it. None: as the eager model (torchvision) computes a
                padded batch.

        Returns:
            The dict of :meth:`RoIHeads.forward`: fixed-size ``boxes`` (B, K, 4) in the pixels of ``x``,
            ``scores``, ``labels`` (int64), ``masks`` (B, K, 28, 28) probabilities, ``num_detections`` (B,).
        """
        features = list(self.backbone(x, region).values())
        if isinstance(image_sizes, Tensor):
            sizes = image_sizes.to(device=x.device, dtype=torch.int64)
        else:
            sizes = torch.tensor([[int(h), int(w)] for h, w in image_sizes], dtype=torch.int64, device=x.device)
        proposals, valid = self.rpn(features, x.shape[-2:], sizes, region)
        pooled = features[:POOLED_LEVELS]
        if region is None:
            largest = (max(int(s[0]) for s in image_sizes), max(int(s[1]) for s in image_sizes))
        else:  # the padded size gives each map's exact power of two (as a lone image's size rounds to)
            largest = (x.shape[-2], x.shape[-1])
        scales = [infer_scale(f.shape[-2:], largest) for f in pooled]
        return self.roi_heads(pooled, scales, proposals, valid, sizes, region)

    # -- eager ---------------------------------------------------------------------------------------------
    def preprocess(self, images: Sequence[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """Normalise, resize and batch as torchvision's transform: -> (B, 3, H, W), sizes after resize."""
        resized = []
        for img in images:
            img = T.normalize(img, self.image_mean, self.image_std)
            img = T.resize_image(img, self.min_size[-1], self.max_size, self.fixed_size)
            resized.append(img)
        sizes = [(int(i.shape[-2]), int(i.shape[-1])) for i in resized]
        return T.batch_images(resized, self.size_divisible), sizes

    def forward(self, images: Sequence[Tensor], targets: Optional[Any] = None) -> list[dict[str, Tensor]]:
        if self.training or targets is not None:
            raise MaskrtError("this Mask R-CNN runs inference only: call model.eval() and pass images without targets")
        T.check_images(images)
        original = [(int(img.shape[-2]), int(img.shape[-1])) for img in images]
        batch, sizes = self.preprocess(images)
        out = self.detect(batch, sizes)
        results = []
        for i, (size, orig) in enumerate(zip(sizes, original)):
            n = int(out["num_detections"][i])
            boxes = T.resize_boxes(out["boxes"][i, :n], size, orig)
            masks = out["masks"][i, :n, None]
            results.append(
                {
                    "boxes": boxes,
                    "labels": out["labels"][i, :n],
                    "scores": out["scores"][i, :n],
                    "masks": T.paste_masks(masks, boxes, orig),
                }
            )
        return results

    # -- weights -------------------------------------------------------------------------------------------
    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False):
        """Load torchvision-layout weights (current or legacy key names).

        With ``strict=True`` a mismatch raises one :class:`MaskrtError` listing missing keys, unexpected keys
        and shape mismatches.
        """
        from maskrt.model.checkpoint import check_state_dict, upgrade_state_dict

        state_dict = upgrade_state_dict(state_dict)
        if strict:
            check_state_dict(self, state_dict)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)


class DeployMaskRCNN(nn.Module):
    """The forward that is exported: uint8 canvases and each image's size in, fixed tensors out.

    Inputs: ``images`` (B, 3, H, W) uint8 RGB, each image resized by the model's rule and placed at the top left
    of its canvas by the caller (the Predictor); ``image_sizes`` (B, 2) int32, the (height, width) each image
    fills (None: the whole canvas). Normalisation happens here, so every backend receives the same bytes.
    Every image is computed as if it were alone (:class:`maskrt.model.region.ValidRegion`): the canvas around it
    is zero after normalisation, convolutions see their own zero padding at its edge, anchors past it never
    compete, proposals and detections are clipped to it; so an image gives the eager model's detections on any
    canvas that holds it, in any batch.

    Outputs, as the deploy contract: ``num_detections`` (B,) int32, ``boxes`` (B, K, 4) float32 XYXY in input
    pixels, ``scores`` (B, K), ``labels`` (B, K) int32, ``masks`` (B, K, 28, 28) float32 probabilities; entries
    past ``num_detections`` are zeros.

    ``fold_batchnorm=True`` runs a copy with every BatchNorm folded into its convolution (equal up to float rounding;
    what the torch backend runs on CUDA). ``precision="fp16"`` runs a half-precision copy of the network; normalisation, RoI Align, box decoding,
    level assignment, NMS scores and the sigmoid/softmax outputs stay in fp32 (the model inserts the casts),
    which is also the layout strongly typed TensorRT networks need. ``dynamic_size=True``: H and W may change
    from call to call (multiples of ``size_divisible``, as the Predictor pads them); every shape in the forward is
    then computed from the input, for graphs exported with dynamic height and width.
    """

    input_names = ("images", "image_sizes")
    output_names = ("num_detections", "boxes", "scores", "labels", "masks")

    def __init__(self, model: MaskRCNN, precision: str = "fp32", dynamic_size: bool = False,
                 fold_batchnorm: bool = False):
        super().__init__()
        if precision not in ("fp32", "fp16"):
            raise MaskrtError(f"precision must be fp32 or fp16, got {precision!r}")
        self.precision = precision
        self.dynamic_size = dynamic_size
        self.folded_batchnorms = 0
        if fold_batchnorm:  # fewer operators per forward; equal up to float rounding (maskrt.model.fold)
            from maskrt.model.fold import fold_batchnorm as _fold

            model, self.folded_batchnorms = _fold(model)
        self.model = half_copy(model) if precision == "fp16" else model
        self.register_buffer("mean", torch.tensor(model.image_mean, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(model.image_std, dtype=torch.float32).reshape(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor, image_sizes: Optional[Tensor] = None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        if images.dim() != 4 or images.shape[1] != 3:
            raise MaskrtError(f"deploy input must be (B, 3, H, W) uint8, got {tuple(images.shape)}")
        if images.dtype != torch.uint8:
            raise MaskrtError(f"deploy input must be uint8 RGB, got {images.dtype}")
        h, w = images.shape[-2], images.shape[-1]
        d = self.model.size_divisible
        if image_sizes is None:
            sizes = torch.stack([torch.full_like(images[:, 0, 0, 0], 0, dtype=torch.int64) + h,
                                 torch.full_like(images[:, 0, 0, 0], 0, dtype=torch.int64) + w], dim=1)
        else:
            sizes = image_sizes.to(torch.int64)
        x = (images.float() / 255.0 - self.mean) / self.std
        if not self.dynamic_size:
            ph, pw = -int(h) % d, -int(w) % d
            if ph or pw:
                x = torch.nn.functional.pad(x, (0, pw, 0, ph))
        # Zero outside each image, as the eager model pads after normalising.
        rows = torch.arange(x.shape[-2], device=x.device)
        cols = torch.arange(x.shape[-1], device=x.device)
        inside = (rows[None, :] < sizes[:, :1])[:, None, :, None] & (cols[None, :] < sizes[:, 1:])[:, None, None, :]
        x = x * inside.to(x.dtype)
        extents = torch.div(sizes + (d - 1), d, rounding_mode="floor") * d  # each image padded on its own
        region = ValidRegion(extents, (x.shape[-2], x.shape[-1]))
        if self.precision == "fp16":
            x = x.half()
        out = self.model.detect(x, sizes, region)
        return (
            out["num_detections"].to(torch.int32),
            out["boxes"],
            out["scores"],
            out["labels"].to(torch.int32),
            out["masks"],
        )


def half_copy(model: MaskRCNN) -> MaskRCNN:
    """A copy of ``model`` with fp16 weights, except FrozenBatchNorm2d statistics, which stay fp32 so that
    their folded scale and shift are rounded once."""
    import copy

    from maskrt.model.backbone import FrozenBatchNorm2d

    half = copy.deepcopy(model).half()
    for (_, mod), (_, src) in zip(half.named_modules(), model.named_modules()):
        if isinstance(mod, FrozenBatchNorm2d):
            for key in ("weight", "bias", "running_mean", "running_var"):
                setattr(mod, key, getattr(src, key).detach().clone().float())
    return half
