"""Checkpoint reading: file formats, torchvision's legacy key layout, strict errors, weights-only loading."""

from __future__ import annotations

import pickle
import re

import pytest
import torch

from maskrt import MaskrtError
from maskrt.model import build, load_checkpoint, read_state_dict, upgrade_state_dict


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return build("maskrcnn_resnet18_fpn", num_classes=4).eval()


@pytest.fixture(scope="module")
def state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def _fresh():
    torch.manual_seed(123)  # different init from the fixture's model
    return build("maskrcnn_resnet18_fpn", num_classes=4).eval()


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def to_legacy(sd: dict) -> dict:
    """Rename current torchvision keys to the legacy layout, written independently of maskrt's upgrade."""
    out = {}
    for k, v in sd.items():
        m = re.match(r"^(backbone\.fpn\.(inner|layer)_blocks\.\d+)\.0\.(weight|bias)$", k)
        if m:
            out[f"{m.group(1)}.{m.group(3)}"] = v
            continue
        m = re.match(r"^rpn\.head\.conv\.0\.0\.(weight|bias)$", k)
        if m:
            out[f"rpn.head.conv.{m.group(1)}"] = v
            continue
        m = re.match(r"^roi_heads\.mask_head\.(\d+)\.0\.(weight|bias)$", k)
        if m:
            out[f"roi_heads.mask_head.mask_fcn{int(m.group(1)) + 1}.{m.group(2)}"] = v
            continue
        out[k] = v
    return out


@pytest.mark.parametrize("wrap", [None, "model", "state_dict"])
def test_pth_roundtrip(tmp_path, model, state, wrap):
    path = tmp_path / "w.pth"
    torch.save(state if wrap is None else {wrap: state, "epoch": 3}, path)
    loaded = load_checkpoint(path, _fresh())
    assert _same_weights(loaded, model)


def test_safetensors_roundtrip(tmp_path, model, state):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert _same_weights(load_checkpoint(path, _fresh()), model)


def test_legacy_layout_loads_strictly(tmp_path, model, state):
    legacy = to_legacy(state)
    renamed = set(legacy) - set(state)
    # the three legacy families are all present: fpn blocks, rpn conv, mask_fcnN
    assert any("inner_blocks.0.weight" in k for k in renamed)
    assert "rpn.head.conv.weight" in renamed
    assert "roi_heads.mask_head.mask_fcn4.weight" in renamed
    path = tmp_path / "legacy.pth"
    torch.save(legacy, path)
    assert _same_weights(load_checkpoint(path, _fresh()), model)
    # load_state_dict itself accepts the legacy layout too, strictly
    m = _fresh()
    m.load_state_dict(legacy, strict=True)
    assert _same_weights(m, model)
    assert upgrade_state_dict(legacy).keys() == state.keys()


def test_v2_legacy_layout_keeps_norm_keys():
    torch.manual_seed(0)
    m = build("maskrcnn_resnet50_fpn_v2", num_classes=3)
    sd = m.state_dict()
    legacy = to_legacy(sd)
    # v2 FPN blocks carry norms (.0 conv without bias, .1 BN): only conv weights have a legacy name
    assert upgrade_state_dict(legacy).keys() == sd.keys()


def test_batchnorm_checkpoint_loads_into_frozen_bn(model, state):
    """A checkpoint trained with BatchNorm2d carries num_batches_tracked; FrozenBatchNorm2d ignores it."""
    sd = dict(state)
    sd["backbone.body.bn1.num_batches_tracked"] = torch.tensor(7)
    m = _fresh()
    m.load_state_dict(sd, strict=True)
    assert _same_weights(m, model)


def test_strict_mismatch_is_one_clear_error(state):
    sd = dict(state)
    del sd["backbone.body.conv1.weight"]
    del sd["roi_heads.box_head.fc6.bias"]
    sd["extra.weight"] = torch.zeros(1)
    sd["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(91, 1024)
    with pytest.raises(MaskrtError) as info:
        _fresh().load_state_dict(sd)
    msg = str(info.value)
    assert "\n" not in msg
    assert "2 missing keys" in msg and "backbone.body.conv1.weight" in msg
    assert "1 unexpected keys" in msg and "extra.weight" in msg
    assert "1 shape mismatches" in msg and "(91, 1024)" in msg
    assert "num_classes" in msg


def test_mismatch_lists_only_the_first_few(state):
    sd = {k: v for k, v in state.items() if not k.startswith("backbone.body.layer4")}
    dropped = len(state) - len(sd)
    with pytest.raises(MaskrtError, match=rf"{dropped} missing keys: .*\({dropped - 5} more\)"):
        _fresh().load_state_dict(sd)


class _Evil:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_pickled_code_is_refused(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    with open(path, "wb") as f:
        pickle.dump({"model": _Evil()}, f)
    with pytest.raises(MaskrtError, match="weights-only"):
        read_state_dict(path)
    assert "unpickled code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not a checkpoint at all", b"\x80\x04\x95"])
def test_garbage_files(tmp_path, content):
    path = tmp_path / "bad.pth"
    path.write_bytes(content)
    with pytest.raises(MaskrtError):
        read_state_dict(path)


def test_bad_safetensors(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    with pytest.raises(MaskrtError, match="safetensors"):
        read_state_dict(path)


def test_missing_file(tmp_path):
    with pytest.raises(MaskrtError, match="not found"):
        read_state_dict(tmp_path / "nope.pth")


def test_non_state_dict_content(tmp_path):
    path = tmp_path / "list.pth"
    torch.save([1, 2, 3], path)
    with pytest.raises(MaskrtError, match="does not hold a state_dict"):
        read_state_dict(path)
