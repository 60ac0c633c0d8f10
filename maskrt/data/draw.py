"""Drawing detections onto images."""

from __future__ import annotations

import colorsys

import numpy as np
import torch


def class_colour(label: int) -> tuple[int, int, int]:
    """A stable, well-spread colour per class id (golden-ratio hues)."""
    h = (label * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, 0.75, 1.0)
    return int(r * 255), int(g * 255), int(b * 255)


def draw_detections(image: torch.Tensor, detections, mask_alpha: float = 0.45):
    """Return a PIL image: ``image`` (3, H, W) uint8 with masks tinted, boxes outlined, 'name score' labels."""
    from PIL import Image, ImageDraw

    canvas = image.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    detections = detections.cpu()
    for i, (crop, top, left) in enumerate(detections.iter_mask_crops()):  # one box-sized crop at a time
        colour = np.array(class_colour(int(detections.labels[i])), dtype=np.float32)
        m = (crop > 0.5).numpy()
        region = canvas[top:top + m.shape[0], left:left + m.shape[1]]
        region[m] = region[m] * (1 - mask_alpha) + colour * mask_alpha
    pil = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(pil)
    for i in range(len(detections)):
        colour = class_colour(int(detections.labels[i]))
        x1, y1, x2, y2 = (float(v) for v in detections.boxes[i])
        draw.rectangle([x1, y1, x2, y2], outline=colour, width=2)
        text = f"{detections.names[i]} {float(detections.scores[i]):.2f}"
        tx, ty = x1 + 2, max(0.0, y1 - 12)
        bbox = draw.textbbox((tx, ty), text)
        draw.rectangle(bbox, fill=(0, 0, 0))
        draw.text((tx, ty), text, fill=colour)
    return pil
