"""ResNet trunks, FrozenBatchNorm2d and the Feature Pyramid Network, with torchvision's module names.

Module and parameter names match torchvision's so that its checkpoints load with ``strict=True``:
``backbone.body.layer1.0.conv1.weight``, ``backbone.fpn.inner_blocks.0.0.weight`` and so on.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Optional

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NormLayer = Callable[[int], nn.Module]


class FrozenBatchNorm2d(nn.Module):
    """BatchNorm2d with fixed statistics and affine parameters (no ``num_batches_tracked``).

    ``y = (x - running_mean) / sqrt(running_var + eps) * weight + bias``, computed as one scale and one
    shift as torchvision does. torchvision's COCO v1 Mask R-CNN weights expect ``eps = 0``.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.register_buffer("weight", torch.ones(num_features))
        self.register_buffer("bias", torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
        # A checkpoint trained with plain BatchNorm2d carries this counter; it has no meaning here.
        state_dict.pop(prefix + "num_batches_tracked", None)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs)

    def forward(self, x: Tensor) -> Tensor:
        # Folded in fp32 whatever the activation dtype, so an fp16 model gets correctly rounded constants.
        scale = self.weight.float() * (self.running_var.float() + self.eps).rsqrt()
        shift = self.bias.float() - self.running_mean.float() * scale
        return x * scale.to(x.dtype).reshape(1, -1, 1, 1) + shift.to(x.dtype).reshape(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[0]}, eps={self.eps}"


class ConvNormAct(nn.Sequential):
    """Conv2d, then an optional norm layer, then an optional ReLU; children named 0, 1, 2 as torchvision's
    ``Conv2dNormActivation``. The conv has a bias only when there is no norm layer."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int = 1,
                 padding: Optional[int] = None, dilation: int = 1, norm_layer: Optional[NormLayer] = None,
                 activation: bool = True):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, dilation=dilation, bias=norm_layer is None)
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation:
            layers.append(nn.ReLU(inplace=True))
        super().__init__(*layers)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: Optional[nn.Module], norm_layer: NormLayer):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.downsample = downsample

    def forward(self, x: Tensor, region=None) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x if region is None else region.mask(x))))
        if region is not None:
            out = region.mask(out)
        out = self.bn2(self.conv2(out))
        out += identity  # in place: a fresh tensor per block costs ~8% of the trunk's time
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck: the stride sits on the 3x3 conv."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int, downsample: Optional[nn.Module], norm_layer: NormLayer):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm_layer(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor, region=None) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        if region is not None:  # the 3x3 conv sees zeros past each image, as its own padding would be
            out = region.mask(out)
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out += identity  # in place: a fresh tensor per block costs ~8% of the trunk's time
        return self.relu(out)


RESNET_DEPTHS = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
}


class ResNetTrunk(nn.Module):
    """The convolutional part of a ResNet (stem and layer1..layer4; no pooling head).

    ``width`` is the stem's channel count (64 in the standard ResNets); layer i has ``width * 2**i`` planes.

    ``forward`` returns an ordered dict ``{"0": C2, "1": C3, "2": C4, "3": C5}`` with strides 4, 8, 16, 32.
    """

    def __init__(self, depth: int, norm_layer: NormLayer, width: int = 64):
        super().__init__()
        block, counts = RESNET_DEPTHS[depth]
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = norm_layer(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, count in enumerate(counts):
            planes = width * 2**i
            setattr(self, f"layer{i + 1}", self._make_layer(block, planes, count, 1 if i == 0 else 2, norm_layer))
        self.out_channels_list = [width * block.expansion * 2**i for i in range(4)]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, block, planes: int, count: int, stride: int, norm_layer: NormLayer) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                norm_layer(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, downsample, norm_layer)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, None, norm_layer) for _ in range(1, count)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor, region=None) -> OrderedDict[str, Tensor]:
        """``region`` (:class:`maskrt.model.region.ValidRegion`): compute each image as if alone (deploy)."""
        x = self.relu(self.bn1(self.conv1(x)))
        if region is not None:
            x = region.mask(x)
        x = self.maxpool(x)
        out: OrderedDict[str, Tensor] = OrderedDict()
        for i in range(4):
            layer = getattr(self, f"layer{i + 1}")
            if region is None:
                x = layer(x)
            else:
                for block in layer:
                    x = block(x, region)
            out[str(i)] = x
        return out


class FeaturePyramidNetwork(nn.Module):
    """FPN with a max-pool ("pool", stride 64) level on top, as torchvision's ``LastLevelMaxPool``.

    Inputs ``{"0": C2, ..., "3": C5}``; outputs ``{"0": P2, "1": P3, "2": P4, "3": P5, "pool": P6}``, each with
    ``out_channels`` channels.
    """

    def __init__(self, in_channels_list: list[int], out_channels: int, norm_layer: Optional[NormLayer] = None):
        super().__init__()
        self.inner_blocks = nn.ModuleList(
            ConvNormAct(c, out_channels, 1, padding=0, norm_layer=norm_layer, activation=False) for c in in_channels_list
        )
        self.layer_blocks = nn.ModuleList(
            ConvNormAct(out_channels, out_channels, 3, norm_layer=norm_layer, activation=False) for _ in in_channels_list
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                if m.bias is not None:
                    nn.init.constant_(m.bias, 0)

    def forward(self, x: OrderedDict[str, Tensor], region=None) -> OrderedDict[str, Tensor]:
        """``region``: zero each level outside each image (before the 3x3 convs and on the outputs, which the RPN
        head's 3x3 convs and RoI Align read)."""
        names = list(x.keys())
        feats = list(x.values())

        def masked(t: Tensor) -> Tensor:
            return t if region is None else region.mask(t)

        last_inner = masked(self.inner_blocks[-1](feats[-1]))
        results = [masked(self.layer_blocks[-1](last_inner))]
        for idx in range(len(feats) - 2, -1, -1):
            lateral = self.inner_blocks[idx](feats[idx])
            top_down = F.interpolate(last_inner, size=lateral.shape[-2:], mode="nearest")
            last_inner = masked(lateral + top_down)
            results.insert(0, masked(self.layer_blocks[idx](last_inner)))
        names.append("pool")
        results.append(F.max_pool2d(results[-1], kernel_size=1, stride=2, padding=0))
        return OrderedDict(zip(names, results))


class BackboneWithFPN(nn.Module):
    """``body`` (a ResNet trunk) followed by ``fpn``; ``out_channels`` is the FPN width."""

    def __init__(self, depth: int, trunk_norm: NormLayer, fpn_norm: Optional[NormLayer] = None, out_channels: int = 256,
                 trunk_width: int = 64):
        super().__init__()
        self.body = ResNetTrunk(depth, trunk_norm, trunk_width)
        self.fpn = FeaturePyramidNetwork(self.body.out_channels_list, out_channels, fpn_norm)
        self.out_channels = out_channels

    def forward(self, x: Tensor, region=None) -> OrderedDict[str, Tensor]:
        return self.fpn(self.body(x, region), region)
