"""The deploy forward's anchors: all levels at once from a cached table (running) against level by level (what a
trace records), for canvases of ordinary photo shapes and batches of images that fill their canvas or not."""

from __future__ import annotations

import pytest
import torch

from maskrt.model import DeployMaskRCNN, build, load_checkpoint
from maskrt.model.anchors import AnchorGenerator
from maskrt.model.presets import get_preset
from maskrt.model.region import AnchorTable, ValidRegion
from maskrt.profiling.opcount import run_on_fake_tensors

STRIDES = (4, 8, 16, 32, 64)


def _region(canvas, sizes, divisor=32):
    sizes = torch.tensor(sizes, dtype=torch.int64)
    extents = torch.div(sizes + divisor - 1, divisor, rounding_mode="floor") * divisor
    return ValidRegion(extents, canvas)


def _features(canvas, batch):
    h, w = canvas
    return [torch.zeros(batch, 1, -(-h // s), -(-w // s)) for s in STRIDES]


@pytest.mark.parametrize("canvas, sizes", [
    ((800, 1344), [[800, 1344]]),  # fills the canvas
    ((800, 1344), [[800, 1067], [600, 1344], [333, 500]]),  # landscape, wide, small in a batch
    ((1344, 800), [[1344, 800], [1000, 751]]),  # portrait
    ((384, 384), [[384, 384], [97, 33]]),
    ((96, 160), [[70, 150]]),  # maps of 2x3 at stride 64
])
def test_all_levels_at_once_equal_level_by_level(canvas, sizes):
    gen = AnchorGenerator()
    region = _region(canvas, sizes)
    feats = _features(canvas, len(sizes))
    anchors, valid = region.anchor_grids(feats, gen.cell_anchors, gen.tables)
    assert len(anchors) == len(valid) == len(STRIDES)
    for level, (f, base) in enumerate(zip(feats, gen.cell_anchors)):
        expected_anchors, expected_valid = region.anchor_grid(f, base)
        assert anchors[level].dtype == expected_anchors.dtype == torch.float32
        assert torch.equal(anchors[level], expected_anchors), level
        assert torch.equal(valid[level], expected_valid), level
    # an image whose padded extent is smaller than the canvas has anchors past it, marked invalid
    fills = bool((region.extents == torch.tensor(canvas)).all())
    assert bool(torch.cat(valid, dim=1).all()) == fills


def test_table_is_built_once_per_map_sizes_and_bounded():
    gen = AnchorGenerator()
    canvases = [(64 * (i + 2), 96) for i in range(AnchorTable.MAX_CACHED + 2)]
    for canvas in canvases:
        region = _region(canvas, [list(canvas)])
        region.anchor_grids(_features(canvas, 1), gen.cell_anchors, gen.tables)
    assert len(gen.tables) == AnchorTable.MAX_CACHED  # the first ones stay (a CUDA graph may read them)
    first = next(iter(gen.tables.values()))
    region = _region(canvases[0], [list(canvases[0])])
    region.anchor_grids(_features(canvases[0], 1), gen.cell_anchors, gen.tables)
    assert next(iter(gen.tables.values())) is first
    # past the bound a canvas still gets its anchors, only not kept
    region = _region(canvases[-1], [list(canvases[-1])])
    got, _ = region.anchor_grids(_features(canvases[-1], 1), gen.cell_anchors, gen.tables)
    expected, _ = region.anchor_grid(_features(canvases[-1], 1)[0], gen.cell_anchors[0])
    assert torch.equal(got[0], expected)
    gen.to("meta")  # moving the module to another device drops the tables
    assert gen.tables == {}
    gen = AnchorGenerator()
    # a canvas whose table would exceed MAX_BYTES builds it per forward
    big = (1024, 1024)
    table = AnchorTable.cached({}, [(256, 256)], [4], gen.cell_anchors[:1])
    assert table.nbytes == 256 * 256 * 3 * 40
    cache: dict = {}
    old = AnchorTable.MAX_BYTES
    AnchorTable.MAX_BYTES = table.nbytes - 1
    try:
        _region(big, [list(big)]).anchor_grids(_features(big, 1), gen.cell_anchors, cache)
    finally:
        AnchorTable.MAX_BYTES = old
    assert cache == {}


def test_fake_tensor_forward_does_not_leave_a_table_without_data():
    model = build("shapes").eval()
    load_checkpoint(get_preset("shapes").weights_path(), model)
    deploy = DeployMaskRCNN(model).eval()
    images = torch.randint(0, 256, (1, 3, 128, 160), dtype=torch.uint8)
    sizes = torch.tensor([[128, 150]], dtype=torch.int32)
    run_on_fake_tensors(deploy, images, sizes)
    assert deploy.model.rpn.anchor_generator.tables == {}
    with torch.no_grad():
        first = deploy(images, sizes)
        assert len(deploy.model.rpn.anchor_generator.tables) == 1
        second = deploy(images, sizes)
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    run_on_fake_tensors(deploy, images, sizes)  # with a real table kept: not mixed into the fake forward
    assert len(deploy.model.rpn.anchor_generator.tables) == 1


def test_tables_survive_casts_and_same_device_moves_and_are_not_copied():
    import copy
    import io
    import threading

    gen = AnchorGenerator()
    canvas = (128, 192)
    _region(canvas, [list(canvas)]).anchor_grids(_features(canvas, 1), gen.cell_anchors, gen.tables)
    table = next(iter(gen.tables.values()))
    # a captured CUDA graph reads the table: moves to where it already is and casts must not free it
    for op in (lambda m: m.to("cpu"), lambda m: m.float(), lambda m: m.half(), lambda m: m.to(torch.float64)):
        op(gen)
        assert next(iter(gen.tables.values())) is table
    assert all(a.dtype == torch.float32 for a in gen.cell_anchors)
    gen.to("meta")  # a real move: built again on the new device
    assert gen.tables == {}
    gen = AnchorGenerator()
    _region(canvas, [list(canvas)]).anchor_grids(_features(canvas, 1), gen.cell_anchors, gen.tables)
    for clone in (copy.copy(gen), copy.deepcopy(gen)):
        assert clone.tables == {} and clone.tables is not gen.tables
    buffer = io.BytesIO()
    torch.save(gen, buffer)
    assert torch.load(io.BytesIO(buffer.getvalue()), weights_only=False).tables == {}
    assert len(gen.tables) == 1

    # threads starting their first forward together share one table per canvas
    barrier, got = threading.Barrier(6), []

    def first_forward():
        barrier.wait()
        got.append(AnchorTable.cached(gen.tables, [(40, 40)], [4], gen.cell_anchors[:1]))

    threads = [threading.Thread(target=first_forward) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(gen.tables) == 2 and all(t is got[0] for t in got)


def test_propose_with_fixed_k_and_no_validity_mask():
    """Levels with more and fewer candidates than pre_n together, without anchor validity (no caller in maskrt
    passes this today; it must still run)."""
    from maskrt.model.presets import load_model

    rpn = load_model("shapes", random_weights=True, seed=0).rpn
    g = torch.Generator().manual_seed(0)
    logits = [torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 2, 2, generator=g)]  # 192 and 12 candidates
    deltas = [torch.randn(2, 12, 8, 8, generator=g) * 0.1, torch.randn(2, 12, 2, 2, generator=g) * 0.1]
    anchors = rpn.anchor_generator((64, 64), [(8, 8), (2, 2)])[:2]
    sizes = torch.tensor([[64, 64]])
    proposals, valid = rpn.propose(logits, deltas, anchors, sizes, pre_nms_top_n=50, post_nms_top_n=30,
                                   fixed_k=True)
    reference, reference_valid = rpn.propose(logits, deltas, anchors, sizes, pre_nms_top_n=50, post_nms_top_n=30)
    assert proposals.shape == (2, 30, 4) and valid.any()
    assert torch.equal(proposals[valid], reference[reference_valid])
