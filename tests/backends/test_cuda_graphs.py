"""The piecewise CUDA-graph wiring, run on the CPU in emulation (the capture itself needs a GPU)."""

from __future__ import annotations

import pytest
import torch

from maskrt.backends.torch.cuda_graphs import GRAPHED_PIECES, GraphedModule, graph_pieces, graphed_modules
from maskrt.evaluation.verify import compare_outputs
from maskrt.model import DeployMaskRCNN
from tests.model.helpers import uint8_images
from tests.profiling.perf_helpers import TINY_SIZE, tiny_model


def test_graphed_deploy_forward_equals_the_plain_one_over_changing_inputs():
    model = tiny_model()
    plain = DeployMaskRCNN(model).eval()
    graphed = DeployMaskRCNN(model).eval()
    graphed.model = graph_pieces(model, mode="emulate")
    pieces = graphed_modules(graphed)
    assert len(pieces) == len(GRAPHED_PIECES)
    with torch.inference_mode():
        h, w = TINY_SIZE
        for seed, sizes in enumerate([[(h, w), (h, w)], [(h - 8, w - 20), (h, w - 3)], [(h // 2, w), (h, w // 2)]]):
            # replays must see each new input and each new image size, not the captured ones
            x = uint8_images(2, *TINY_SIZE, seed=seed)
            image_sizes = torch.tensor(sizes, dtype=torch.int32)
            want, got = plain(x, image_sizes), graphed(x, image_sizes)
            for a, b in zip(want, got):
                assert torch.equal(a, b)
    assert all(p.replays == 3 and len(p._captures) == 1 for p in pieces)
    # a new batch size is a new capture
    with torch.inference_mode():
        graphed(uint8_images(1, *TINY_SIZE, seed=9))
    assert all(len(p._captures) == 2 for p in pieces)


def test_graph_pieces_leaves_the_original_model_alone():
    model = tiny_model()
    graphed = graph_pieces(model, mode="emulate")
    assert not any(isinstance(m, GraphedModule) for m in model.modules())
    assert isinstance(graphed.backbone, GraphedModule) and isinstance(graphed.roi_heads.mask_predictor, GraphedModule)
    assert graphed.roi_heads.box_head.module is model.roi_heads.box_head  # weights shared, not copied


def test_static_outputs_are_reused_between_replays():
    lin = torch.nn.Linear(4, 3)
    g = GraphedModule(lin, mode="emulate")
    with torch.no_grad():
        a = g(torch.ones(2, 4))
        first = a.clone()
        b = g(torch.zeros(2, 4))
    assert a is b  # one static output tensor, overwritten by each replay
    assert torch.equal(b, lin(torch.zeros(2, 4))) and not torch.equal(b, first)


def test_unknown_mode():
    with pytest.raises(ValueError):
        GraphedModule(torch.nn.Identity(), mode="other")


def test_torch_runner_fp16_on_cpu_stays_within_fp16_tolerance():
    from maskrt.backends import TorchRunner

    model = tiny_model()
    x = {"images": uint8_images(1, *TINY_SIZE, seed=4)}
    with TorchRunner(model, TINY_SIZE, 1) as r32:
        a = r32.infer(x)
    with TorchRunner(model, TINY_SIZE, 1, precision="fp16") as r16:
        b = r16.infer(x)
    assert b["boxes"].dtype == torch.float32 and b["masks"].dtype == torch.float32
    assert int(a["num_detections"][0]) > 5
    check, problems = compare_outputs(a, b, 0, "fp16 vs fp32", "fp16")
    assert problems == [] and check.matched >= 0.9 * check.reference


def test_whole_forward_graph_equals_the_plain_one():
    """The whole deploy forward as one graph (what the torch runner captures when maskrt's CUDA kernels are
    registered): replays follow new inputs and image sizes; outputs are the static tensors."""
    from maskrt.backends.torch.cuda_graphs import graph_whole

    model = tiny_model()
    plain = DeployMaskRCNN(model).eval()
    graphed = graph_whole(DeployMaskRCNN(model).eval(), mode="emulate")
    h, w = TINY_SIZE
    with torch.inference_mode():
        first = None
        for seed, sizes in enumerate([[(h, w), (h, w)], [(h - 8, w - 20), (h, w - 3)]]):
            x = uint8_images(2, *TINY_SIZE, seed=seed)
            image_sizes = torch.tensor(sizes, dtype=torch.int32)
            want, got = plain(x, image_sizes), graphed(x, image_sizes)
            for a, b in zip(want, got):
                assert torch.equal(a, b)
            first = got if first is None else first
            assert all(a is b for a, b in zip(first, got))  # static outputs, overwritten by each replay
    assert graphed.replays == 2 and len(graphed._captures) == 1
