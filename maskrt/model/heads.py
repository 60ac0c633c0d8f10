"""RPN head and the box and mask heads, with torchvision's module names.

v1 heads: ``TwoMLPHead`` (fc6, fc7) and ``MaskRCNNHeads`` of four 3x3 conv + ReLU. v2 heads: four conv + BN +
ReLU then one FC for boxes, conv + BN + ReLU for masks, and two convs in the RPN head.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Optional

import torch
from torch import Tensor, nn

from maskrt.model.backbone import ConvNormAct, NormLayer


def _init_convs(module: nn.Module) -> None:
    """He-normal (fan_out) conv weights and zero biases, torchvision's init for the box and mask heads."""
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, mode="fan_out", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)


class RPNHead(nn.Module):
    """``conv_depth`` 3x3 convs with ReLU, then per-anchor objectness logits and box deltas."""

    def __init__(self, in_channels: int, num_anchors: int, conv_depth: int = 1):
        super().__init__()
        self.conv = nn.Sequential(*[ConvNormAct(in_channels, in_channels, 3) for _ in range(conv_depth)])
        self.cls_logits = nn.Conv2d(in_channels, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(in_channels, num_anchors * 4, 1)
        for layer in self.modules():
            if isinstance(layer, nn.Conv2d):
                nn.init.normal_(layer.weight, std=0.01)
                nn.init.constant_(layer.bias, 0)

    def forward(self, features: list[Tensor], region=None) -> tuple[list[Tensor], list[Tensor]]:
        """Per level: objectness (B, A, H, W) and deltas (B, 4A, H, W). ``region``: zero each image's surroundings
        between the 3x3 convs (the inputs come masked)."""
        logits, deltas = [], []
        for f in features:
            if region is None:
                t = self.conv(f)
            else:
                t = f
                for i, layer in enumerate(self.conv):
                    t = layer(t if i == 0 else region.mask(t))
            logits.append(self.cls_logits(t))
            deltas.append(self.bbox_pred(t))
        return logits, deltas


class TwoMLPHead(nn.Module):
    """Flatten, fc6 + ReLU, fc7 + ReLU."""

    def __init__(self, in_channels: int, representation_size: int):
        super().__init__()
        self.fc6 = nn.Linear(in_channels, representation_size)
        self.fc7 = nn.Linear(representation_size, representation_size)

    def forward(self, x: Tensor) -> Tensor:
        x = x.flatten(start_dim=1)
        return torch.relu(self.fc7(torch.relu(self.fc6(x))))


class ConvFCHead(nn.Sequential):
    """Convs (with norm) then Flatten then FC + ReLU layers: torchvision's ``FastRCNNConvFCHead``."""

    def __init__(self, input_size: tuple[int, int, int], conv_layers: list[int], fc_layers: list[int],
                 norm_layer: Optional[NormLayer] = None):
        channels, height, width = input_size
        blocks: list[nn.Module] = []
        prev = channels
        for c in conv_layers:
            blocks.append(ConvNormAct(prev, c, 3, norm_layer=norm_layer))
            prev = c
        blocks.append(nn.Flatten())
        prev = prev * height * width
        for c in fc_layers:
            blocks += [nn.Linear(prev, c), nn.ReLU(inplace=True)]
            prev = c
        super().__init__(*blocks)
        _init_convs(self)


class BoxPredictor(nn.Module):
    """Class logits (num_classes) and per-class box deltas (4 * num_classes): ``FastRCNNPredictor``."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.cls_score = nn.Linear(in_channels, num_classes)
        self.bbox_pred = nn.Linear(in_channels, num_classes * 4)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        x = x.flatten(start_dim=1)
        return self.cls_score(x), self.bbox_pred(x)


class MaskHead(nn.Sequential):
    """3x3 convs with ReLU (and norm for v2): torchvision's ``MaskRCNNHeads``."""

    def __init__(self, in_channels: int, layers: list[int], dilation: int = 1, norm_layer: Optional[NormLayer] = None):
        blocks = []
        prev = in_channels
        for c in layers:
            blocks.append(ConvNormAct(prev, c, 3, padding=dilation, dilation=dilation, norm_layer=norm_layer))
            prev = c
        super().__init__(*blocks)
        _init_convs(self)


class MaskPredictor(nn.Sequential):
    """2x2 stride-2 transposed conv + ReLU, then 1x1 conv to per-class mask logits: ``MaskRCNNPredictor``."""

    def __init__(self, in_channels: int, dim_reduced: int, num_classes: int):
        super().__init__(
            OrderedDict(
                [
                    ("conv5_mask", nn.ConvTranspose2d(in_channels, dim_reduced, 2, 2, 0)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("mask_fcn_logits", nn.Conv2d(dim_reduced, num_classes, 1, 1, 0)),
                ]
            )
        )
        for name, param in self.named_parameters():
            if "weight" in name:
                nn.init.kaiming_normal_(param, mode="fan_out", nonlinearity="relu")
