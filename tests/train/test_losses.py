"""Training losses: matching, sampling, the differentiable RoI Align, and losses that fall on a tiny batch."""

from __future__ import annotations

import torch

from maskrt.data.shapes import make_scene
from maskrt.model import build
from maskrt.model import transform as T
from maskrt.ops.roi_align import roi_align
from maskrt.train import inference_state_dict, trainable
from maskrt.train.loop import TrainConfig, learning_rate, scene_sample
from maskrt.train.losses import BELOW_LOW, BETWEEN, match, sample, training_losses


def test_match_thresholds_and_low_quality():
    iou = torch.tensor([[0.9, 0.5, 0.1, 0.2],
                        [0.1, 0.6, 0.2, 0.25]])
    plain = match(iou, 0.7, 0.3, allow_low_quality=False)
    assert plain.tolist() == [0, BETWEEN, BELOW_LOW, BELOW_LOW]
    # Ground truth 1's best candidate (column 1, IoU 0.6) becomes a match despite the threshold.
    low_quality = match(iou, 0.7, 0.3, allow_low_quality=True)
    assert low_quality.tolist() == [0, 1, BELOW_LOW, BELOW_LOW]
    empty = match(torch.zeros((0, 3)), 0.5, 0.5, allow_low_quality=False)
    assert empty.tolist() == [BELOW_LOW] * 3


def test_sample_respects_counts_and_fraction():
    labels = torch.tensor([1] * 10 + [0] * 100 + [-1] * 5)
    g = torch.Generator().manual_seed(0)
    pos, neg = sample(labels, 32, 0.25, g)
    assert pos.numel() == 8 and neg.numel() == 24
    assert (labels[pos] == 1).all() and (labels[neg] == 0).all()
    assert len(set(pos.tolist())) == 8 and len(set(neg.tolist())) == 24
    few = torch.tensor([2, 0, 0, -1])
    pos, neg = sample(few, 32, 0.5, g)
    assert pos.tolist() == [0] and sorted(neg.tolist()) == [1, 2]


def test_differentiable_roi_align_matches_inference_path_and_gradcheck():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 12, 14, dtype=torch.float64)
    rois = torch.tensor([[0, 1.0, 2.0, 9.5, 8.0], [1, 0.5, 0.5, 13.0, 11.0], [0, 3.0, 3.0, 4.0, 5.5]], dtype=torch.float64)
    for ratio in (2, -1):
        with torch.no_grad():
            ref = roi_align(x, rois, (4, 5), 1.0, ratio, False)
        y = roi_align(x.clone().requires_grad_(True), rois, (4, 5), 1.0, ratio, False)
        assert y.requires_grad
        torch.testing.assert_close(y.detach(), ref, rtol=1e-12, atol=1e-12)
    xs = torch.randn(1, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    small = torch.tensor([[0, 0.3, 0.7, 5.2, 4.9]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda t: roi_align(t, small, (2, 3), 1.0, 2, False), (xs,))


def _tiny_batch(model, count=2):
    samples = [scene_sample(make_scene(5, i), model) for i in range(count)]
    sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img, _ in samples]
    return T.batch_images([img for img, _ in samples], model.size_divisible), sizes, [t for _, t in samples]


def test_losses_fall_on_a_tiny_batch_and_reach_the_trunk():
    torch.manual_seed(0)
    model = trainable(build("shapes")).train()
    batch, sizes, targets = _tiny_batch(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    first = last = None
    for step in range(12):
        losses = training_losses(model, batch, sizes, targets, torch.Generator().manual_seed(step))
        assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask"}
        total = sum(losses.values())
        assert torch.isfinite(total)
        optimizer.zero_grad()
        total.backward()
        if step == 0:
            first = {k: float(v.detach()) for k, v in losses.items()}
        optimizer.step()
        last = {k: float(v.detach()) for k, v in losses.items()}
    assert sum(last.values()) < 0.6 * sum(first.values()), (first, last)


def test_head_losses_send_gradients_into_the_trunk():
    torch.manual_seed(0)
    model = trainable(build("shapes")).train()
    batch, sizes, targets = _tiny_batch(model, 1)
    losses = training_losses(model, batch, sizes, targets, torch.Generator().manual_seed(0))
    (losses["loss_classifier"] + losses["loss_mask"]).backward()
    grad = model.backbone.body.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0
    assert model.rpn.head.cls_logits.weight.grad is None  # the RPN took no part in these two losses


def test_trained_weights_load_into_the_inference_model():
    torch.manual_seed(0)
    model = trainable(build("shapes")).train()
    batch, sizes, targets = _tiny_batch(model, 2)
    training_losses(model, batch, sizes, targets)  # one forward in train mode updates the BN statistics
    state = inference_state_dict(model)
    assert not any(k.endswith("num_batches_tracked") for k in state)
    inference = build("shapes").eval()
    inference.load_state_dict(state)
    model.eval()
    with torch.no_grad():
        a = model.backbone(batch)
        b = inference.backbone(batch)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4)


def test_learning_rate_schedule():
    cfg = TrainConfig(out_dir="unused", iterations=1000, warmup=100, lr=1e-3)
    assert abs(learning_rate(cfg, 0) - 1e-5) < 1e-12
    assert abs(learning_rate(cfg, 100) - 1e-3) < 1e-12
    assert learning_rate(cfg, 550) < learning_rate(cfg, 300) < 1e-3
    assert abs(learning_rate(cfg, 1000) - 1e-5) < 1e-9
