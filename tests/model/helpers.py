"""Small models and inputs shared by the model tests."""

from __future__ import annotations

import torch

from maskrt.model import build


def small_model(name: str = "maskrcnn_resnet18_fpn", *, seed: int = 0, num_classes: int = 5,
                classifier_scale: float = 40.0, background_bias: float | None = None, **kwargs):
    """A model with random weights whose classifier is confident enough to give detections above 0.05.

    Random heads give near-uniform class scores (about 1/num_classes); scaling the classifier spreads the
    logits so that some classes clear the default threshold, as a trained model's do.
    """
    torch.manual_seed(seed)
    model = build(name, num_classes=num_classes, **kwargs)
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(40.0)
        model.roi_heads.box_predictor.cls_score.weight.mul_(classifier_scale / 40.0)
        model.roi_heads.box_predictor.cls_score.bias.uniform_(-2.0, 2.0)
        if background_bias is not None:
            model.roi_heads.box_predictor.cls_score.bias[0] = background_bias
    return model.eval()


def uint8_images(count: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """(count, 3, H, W) uint8 images from maskrt's generated test pictures."""
    from maskrt.data.images import synthetic_image

    return torch.stack([synthetic_image(height, width, seed + i) for i in range(count)])
