#!/usr/bin/env python
"""Check maskrt's training losses (and their gradients) against torchvision's, on the same weights and scenes.

Run it with a python that has torchvision (the reference virtualenv, see setup_torchvision_venv.sh):

    .venv-torchvision/bin/python benchmarks/torchvision_loss_parity.py [--json OUT]

Both sides get the same R18-FPN Mask R-CNN (torchvision's random initialisation, loaded into maskrt strictly),
five classes, min_size 320 / max_size 384, and two generated shapes scenes that need no resizing. Sampling is
made deterministic on both sides by sampling everything: ``rpn_batch_size_per_image`` and
``box_batch_size_per_image`` are larger than any candidate count and the positive fractions are 1, so every
positive and negative anchor/proposal takes part. The five losses and the gradients of a few parameters (the
trunk's first conv, the RPN head, the box predictor, the mask predictor) are compared.

Exit status: 0 when every loss and gradient agrees within tolerance, 1 otherwise, 2 without torchvision.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402

try:
    from torchvision.models.detection.backbone_utils import resnet_fpn_backbone
    from torchvision.models.detection.mask_rcnn import MaskRCNN as TVMaskRCNN
except Exception as e:  # pragma: no cover - depends on the interpreter
    print(f"torchvision is not importable here ({type(e).__name__}: {e}); use the reference virtualenv "
          "(bash benchmarks/setup_torchvision_venv.sh)", file=sys.stderr)
    sys.exit(2)

from maskrt.data.shapes import make_scene  # noqa: E402
from maskrt.model import build  # noqa: E402
from maskrt.train.losses import training_losses  # noqa: E402

SETTINGS = dict(min_size=320, max_size=384, rpn_batch_size_per_image=10**7, rpn_positive_fraction=1.0,
                box_batch_size_per_image=10**7, box_positive_fraction=1.0)
GRADS = ["backbone.body.conv1.weight", "backbone.fpn.layer_blocks.0.0.weight", "rpn.head.cls_logits.weight",
         "rpn.head.bbox_pred.weight", "roi_heads.box_head.fc6.weight", "roi_heads.box_predictor.cls_score.weight",
         "roi_heads.box_predictor.bbox_pred.weight", "roi_heads.mask_head.0.0.weight",
         "roi_heads.mask_predictor.mask_fcn_logits.weight"]


def scenes(count: int = 2):
    """Scenes the resize leaves at their size (320x320 and 256x384 with min 320 / max 384)."""
    out, index = [], 0
    while len(out) < count:
        s = make_scene(11, index)
        index += 1
        if s.image.shape[:2] in ((320, 320), (256, 384)) and len(s.instances) >= 2:
            out.append(s)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the comparison here")
    parser.add_argument("--rtol", type=float, default=1e-4)
    args = parser.parse_args()
    torch.manual_seed(0)
    tv = TVMaskRCNN(resnet_fpn_backbone(backbone_name="resnet18", weights=None, trainable_layers=5), num_classes=5,
                    **SETTINGS).train()
    ours = build("maskrcnn_resnet18_fpn", num_classes=5, **SETTINGS).train()
    ours.load_state_dict(tv.state_dict())

    data = scenes()
    images = [torch.from_numpy(np.ascontiguousarray(s.image)).permute(2, 0, 1).float() / 255.0 for s in data]
    tv_targets, our_targets = [], []
    for s in data:
        boxes = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (i.bbox for i in s.instances)], dtype=torch.float32)
        labels = torch.tensor([i.category_id for i in s.instances], dtype=torch.int64)
        masks = torch.from_numpy(np.stack([i.mask for i in s.instances]))
        tv_targets.append({"boxes": boxes, "labels": labels, "masks": masks.to(torch.uint8)})
        our_targets.append({"boxes": boxes, "labels": labels, "masks": masks.float()})

    tv_losses = tv(images, tv_targets)
    sum(tv_losses.values()).backward()
    batch, sizes = ours.preprocess(images)
    assert sizes == [tuple(img.shape[-2:]) for img in images], "these scenes must not be resized"
    our_losses = training_losses(ours, batch, sizes, our_targets)
    sum(our_losses.values()).backward()

    rows, ok = [], True
    for name in sorted(tv_losses):
        a, b = float(tv_losses[name].detach()), float(our_losses[name].detach())
        rel = abs(a - b) / max(abs(a), 1e-12)
        ok &= rel <= args.rtol
        rows.append({"loss": name, "torchvision": a, "maskrt": b, "rel_diff": rel})
        print(f"{name:20s} torchvision {a:.8f}  maskrt {b:.8f}  rel {rel:.2e}")
    tv_params, our_params = dict(tv.named_parameters()), dict(ours.named_parameters())
    grads = []
    for name in GRADS:
        ga, gb = tv_params[name].grad, our_params[name].grad
        rel = float((ga - gb).norm() / ga.norm().clamp(min=1e-30))
        ok &= rel <= 10 * args.rtol
        grads.append({"parameter": name, "grad_norm": float(ga.norm()), "rel_diff": rel})
        print(f"grad {name:45s} |g| {float(ga.norm()):.4e}  rel {rel:.2e}")
    print("PASS" if ok else "FAIL")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"losses": rows, "gradients": grads, "ok": ok, "settings": SETTINGS,
                       "torch": torch.__version__}, f, indent=2)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
