"""The RoI Align explainer page: its JavaScript equals maskrt.ops, it works in a browser, it rejects bad input.

Pages are loaded in headless Chromium (skipped when it is not installed). The reference is computed from the
feature map the page itself embeds (its source of truth), in float32, with maskrt.ops.roi_align / roi_pool.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest
import torch

from maskrt.core.errors import MaskrtError
from maskrt.explain import roi_align as page
from maskrt.ops import roi_align, roi_pool

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="headless Chromium is not installed (apt-get install chromium)"
)
TOLERANCE = 1e-5


# ------------------------------------------------------------------------------------------------ helpers


def _chromium(args: list[str], url: str, profile) -> subprocess.CompletedProcess:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args, url]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def _dump_dom(path: str, profile) -> tuple[str, list[str]]:
    """The DOM after the page's scripts ran, and the console lines Chromium logged."""
    r = _chromium(["--dump-dom"], f"file://{path}", profile)
    return r.stdout, [line for line in r.stderr.splitlines() if ":CONSOLE" in line]


def _element_json(dom: str, element_id: str):
    m = re.search(rf'<(script|pre)[^>]*\bid="{element_id}"[^>]*>(.*?)</\1>', dom, re.DOTALL)
    assert m, f"no element #{element_id} in the page"
    assert m.group(2).strip(), f"#{element_id} is empty: the page's script did not write it"
    return json.loads(m.group(2))


def _reference(state: dict, box=None, sampling_ratio=None, mode=None) -> tuple[np.ndarray, np.ndarray]:
    """maskrt.ops on the page's own float32 feature map: (align, pool), each (C, PH, PW)."""
    feature = torch.tensor(state["feature"], dtype=torch.float32)
    if feature.dim() == 2:
        feature = feature[None]
    boxes = [torch.tensor([box or state["box"]], dtype=torch.float32)]
    size = tuple(state["output_size"])
    align = roi_align(feature[None], boxes, size, state["spatial_scale"],
                      state["sampling_ratio"] if sampling_ratio is None else sampling_ratio,
                      state["aligned"], mode or state["mode"])[0]
    pool = roi_pool(feature[None], boxes, size, state["spatial_scale"])[0]
    return align.numpy(), pool.numpy()


def _assert_outputs_match(dom: str, **override) -> dict:
    state = _element_json(dom, "roi-align-input")
    got_align = np.asarray(_element_json(dom, "roi-align-output")["output"], dtype=np.float64)
    got_pool = np.asarray(_element_json(dom, "roi-pool-output")["output"], dtype=np.float64)
    want_align, want_pool = _reference(state, **override)
    assert got_align.shape == want_align.shape and got_pool.shape == want_pool.shape
    np.testing.assert_allclose(got_align, want_align, rtol=0, atol=TOLERANCE, err_msg="RoI Align")
    np.testing.assert_allclose(got_pool, want_pool, rtol=0, atol=TOLERANCE, err_msg="RoI Pool")
    return state


# ------------------------------------------------------------------------------------------------ the ops in JS

# One page per state; together they cover avg and max, sampling ratios 1, 2, 3 and adaptive, aligned on and
# off, boxes partly off the feature map on every side, tiny boxes, strides 4, 8, 16 and 32, model and luminance
# features, and non-square outputs.
CASES = {
    "default": dict(),
    "stride4-max-adaptive-aligned-off-top-left": dict(
        stride=4, mode="max", sampling_ratio=0, aligned=True, box="-10,-6,41.5,30"),
    "stride16-luminance-sr3-aligned-tiny": dict(
        stride=16, features="luminance", sampling_ratio=3, aligned=True, box="100.3,50.2,101.1,50.9"),
    "stride16-max-sr1-off-bottom-right": dict(stride=16, mode="max", sampling_ratio=1, box="350,290,420,345"),
    "stride8-luminance-adaptive-tiny-unaligned": dict(
        stride=8, features="luminance", sampling_ratio=0, output_size=5, box="200,100,200.5,103"),
    # 29 cells pooled into 7 bins: ceil(7 * (29 / 7)) is 29 in float32, 30 in float64; the page must use float32.
    "stride4-bin-edges-float32": dict(stride=4, box="40,40,152,152"),
    "stride32-avg-adaptive-aligned-3x5": dict(
        stride=32, sampling_ratio=0, aligned=True, output_size=(3, 5), box="20.5,30.25,300,250"),
}


@needs_chromium
@pytest.mark.parametrize("name", list(CASES))
def test_page_outputs_equal_maskrt_ops(name, tmp_path):
    options = CASES[name]
    path = page.write_page(tmp_path / "page.html", **options)
    dom, console = _dump_dom(path, tmp_path / "profile")
    assert console == []
    state = _assert_outputs_match(dom)
    if "box" in options:
        assert state["box"] == list(page.parse_box(options["box"]))
    if name == "stride4-bin-edges-float32":
        cells = [round(v / 4) for v in state["box"]]
        assert cells[2] - cells[0] + 1 == 29 and cells[3] - cells[1] + 1 == 29


INTERACTION = """
<script>
(function () {
  // Scripted use of the page: drag the box, resize it, change settings, hover a sample, step the scan.
  const api = window.maskrtRoiAlign, canvas = document.getElementById("stage");
  const INPUT = JSON.parse(document.getElementById("roi-align-input").textContent);
  const rect = canvas.getBoundingClientRect();
  const k = rect.width / (api.world.x1 - api.world.x0);
  const client = (x, y) => ({ clientX: rect.left + (x - api.world.x0) * k,
                               clientY: rect.top + (y - api.world.y0) * k });
  const fire = (type, x, y) => canvas.dispatchEvent(new PointerEvent(type, Object.assign(
    { bubbles: true, button: 0, pointerId: 1, isPrimary: true }, client(x, y))));
  const log = {};
  let b = api.state.box.slice();
  fire("pointerdown", (b[0] + b[2]) / 2, (b[1] + b[3]) / 2);
  fire("pointermove", (b[0] + b[2]) / 2 + 24, (b[1] + b[3]) / 2 + 16);
  fire("pointerup", (b[0] + b[2]) / 2 + 24, (b[1] + b[3]) / 2 + 16);
  log.moved = api.state.box.slice();
  b = api.state.box.slice();
  fire("pointerdown", b[2], b[3]);
  fire("pointermove", b[2] + 10, b[3] + 5);
  fire("pointerup", b[2] + 10, b[3] + 5);
  log.resized = api.state.box.slice();
  log.alignAfterDrag = JSON.parse(document.getElementById("roi-align-output").textContent).output;
  canvas.dispatchEvent(new KeyboardEvent("keydown", { key: "ArrowRight", shiftKey: true, bubbles: true }));
  log.keyed = api.state.box.slice();
  const set = (id, value) => {
    const e = document.getElementById(id);
    e.value = value;
    e.dispatchEvent(new Event("change"));
  };
  set("ctl-sampling", "3");
  set("ctl-mode", "max");
  set("ctl-channel", "1");
  // Hover the first sampling point of bin (0, 0).
  const s = api;
  const geo = s.alignGeometry(s.state.box, INPUT.spatial_scale, s.state.ph, s.state.pw, s.state.sampling,
                              s.state.aligned, s.feature.H, s.feature.W);
  const stride = 1 / INPUT.spatial_scale;
  fire("pointermove", (geo.xs[0].raw + 0.5) * stride, (geo.ys[0].raw + 0.5) * stride);
  log.detail = document.getElementById("detail").textContent;
  document.getElementById("scan-step").click();
  document.getElementById("scan-step").click();
  log.scanStatus = document.getElementById("scan-status").textContent;
  log.final = { box: s.state.box, sampling: s.state.sampling, mode: s.state.mode };
  const pre = document.createElement("pre");
  pre.id = "test-log";
  pre.textContent = JSON.stringify(log);
  document.body.appendChild(pre);
})();
</script>
"""


@needs_chromium
def test_page_reacts_to_drag_resize_controls_hover_and_scan(tmp_path):
    path = page.write_page(tmp_path / "page.html", stride=8)
    text = open(path, encoding="utf-8").read()
    scripted = tmp_path / "scripted.html"
    scripted.write_text(text.replace("</body>", INTERACTION + "</body>"), encoding="utf-8")
    dom, console = _dump_dom(str(scripted), tmp_path / "profile")
    assert console == []
    log = _element_json(dom, "test-log")
    state = _element_json(dom, "roi-align-input")
    x1, y1, x2, y2 = state["box"]
    assert log["moved"] == [x1 + 24, y1 + 16, x2 + 24, y2 + 16]
    assert log["resized"] == [x1 + 24, y1 + 16, x2 + 34, y2 + 21]
    # The drag recomputed: the outputs are those of the moved and resized box (settings unchanged then).
    want, _ = _reference(state, box=log["resized"])
    np.testing.assert_allclose(np.asarray(log["alignAfterDrag"]), want, rtol=0, atol=TOLERANCE)
    assert log["keyed"] == [x1 + 24 + 8, y1 + 16, x2 + 34 + 8, y2 + 21]  # Shift+ArrowRight: one cell
    assert "weight" in log["detail"] and "value =" in log["detail"]
    # Two scan steps: the second anchor (ratio 0.5, size 64) at the first position, a cell corner.
    m = re.fullmatch(r"anchor 2 of \d+: 64 px wide \(h/w 0.5\) at \((\d+), (\d+)\)", log["scanStatus"])
    assert m, log["scanStatus"]
    cx, cy = int(m.group(1)), int(m.group(2))
    assert cx % state["stride"] == 0 and cy % state["stride"] == 0
    anchor = [c + d for c, d in zip(page._anchor_cells()[1], (cx, cy, cx, cy))]
    assert log["final"] == {"box": anchor, "sampling": 3, "mode": "max"}
    _assert_outputs_match(dom, box=anchor, sampling_ratio=3, mode="max")


@needs_chromium
def test_console_check_catches_a_script_error(tmp_path):
    path = page.write_page(tmp_path / "page.html", stride=32, features="luminance")
    broken = tmp_path / "broken.html"
    text = open(path, encoding="utf-8").read()
    broken.write_text(text.replace('"use strict";', '"use strict"; undefinedThing();', 1))
    _, console = _dump_dom(str(broken), tmp_path / "profile")
    assert any("undefinedThing" in line for line in console)


@needs_chromium
def test_screenshot_is_not_blank(tmp_path):
    from PIL import Image

    path = page.write_page(tmp_path / "page.html")
    png = tmp_path / "shot.png"
    r = _chromium([f"--screenshot={png}", "--window-size=1200,900"], f"file://{path}", tmp_path / "profile")
    assert png.is_file(), r.stderr[-2000:]
    pixels = np.asarray(Image.open(png).convert("RGB"), dtype=np.float64)
    assert pixels.shape[:2] == (900, 1200)
    assert pixels.std() > 30
    # The stage (left, below the controls) shows the image: many distinct colours, not a flat panel.
    stage = pixels[260:700, 40:620].reshape(-1, 3)
    assert stage.std(axis=0).mean() > 20
    assert len(np.unique(stage.astype(np.uint8), axis=0)) > 2000


# ------------------------------------------------------------------------------------------------ the file


def test_page_is_self_contained(tmp_path):
    text = page.render_page(page.page_state(stride=16))
    assert not re.search(r"""(src|href|action)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", text, re.IGNORECASE)
    for banned in ("@import", "fetch(", "XMLHttpRequest", "<link", "WebSocket", "import("):
        assert banned not in text
    assert 'src="data:image/png;base64,' in text
    assert text.count('<script type="application/json" id="roi-align-input">') == 1


def test_page_state_interface():
    state = page.page_state(stride=16, output_size=(4, 6), sampling_ratio=-1, mode="max", aligned=True)
    feature = np.asarray(state["feature"], dtype=np.float32)
    assert feature.ndim == 3 and feature.shape[0] == page.EMBEDDED_CHANNELS
    assert list(feature.shape[1:]) == state["map_size"]
    assert state["spatial_scale"] == 1 / 16 and state["output_size"] == [4, 6]
    assert state["sampling_ratio"] == 0 and state["aligned"] is True and state["mode"] == "max"
    h, w = state["image_size"]
    # The map covers the image padded to a multiple of 32.
    assert state["map_size"] == [-(-h // 32) * 2, -(-w // 32) * 2]
    x1, y1, x2, y2 = state["box"]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
    json.dumps(state)  # JSON-ready
    lum = page.page_state(features="luminance", stride=8)
    assert lum["channels"] == ["luminance"]
    values = np.asarray(lum["feature"])
    assert values.shape[0] == 1 and values.min() >= 0 and values.max() <= 1


def test_page_state_takes_an_image_file(tmp_path):
    from PIL import Image

    rgb = np.zeros((200, 500, 3), dtype=np.uint8)
    rgb[50:150, 100:300] = (250, 200, 10)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    state = page.page_state(image=str(tmp_path / "in.png"), features="luminance", stride=4)
    # Resized as the shapes model does: long side 384 limits it, so 153x384.
    assert state["original_size"] == [200, 500] and state["image_size"] == [153, 384]
    assert state["source"] == "in.png"
    assert state["box"] == [128.0, 51.0, 256.0, 102.0]  # the middle third


def test_write_page_file_mode_and_no_leftovers(tmp_path):
    with pytest.raises(MaskrtError, match="folder .* does not exist"):
        page.write_page(tmp_path / "out" / "page.html", stride=32, features="luminance")
    (tmp_path / "out").mkdir()
    old = os.umask(0o022)
    try:
        path = page.write_page(tmp_path / "out" / "page.html", stride=32, features="luminance")
    finally:
        os.umask(old)
    assert os.stat(path).st_mode & 0o777 == 0o644
    assert os.listdir(tmp_path / "out") == ["page.html"]


def test_write_page_removes_its_temp_file_when_interrupted(tmp_path, monkeypatch):
    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(page.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        page.write_page(tmp_path / "page.html", stride=32, features="luminance")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------------------------------------------------ bad input


def _unreadable(tmp_path) -> str:
    path = tmp_path / "notes.png"
    path.write_text("this is not a picture\n")
    return str(path)


BAD = {
    "unreadable image": (lambda tmp: dict(image=_unreadable(tmp)), "cannot read image"),
    "box outside the image": (lambda tmp: dict(box="500,20,560,80"), "outside the image"),
    "x2 < x1": (lambda tmp: dict(box="80,20,40,60"), "x2 < x1"),
    "y2 < y1": (lambda tmp: dict(box=(10, 60, 40, 20)), "y2 < y1"),
    "stride 64": (lambda tmp: dict(stride=64), "stride 64"),
    "output size 0": (lambda tmp: dict(output_size=0), "output_size"),
    "mode": (lambda tmp: dict(mode="median"), "choose avg or max"),
    "features": (lambda tmp: dict(features="depth"), "choose model or luminance"),
    "box text": (lambda tmp: dict(box="1,2,3"), "not 4"),
}


@pytest.mark.parametrize("name", list(BAD))
def test_bad_input_is_one_line_and_writes_nothing(name, tmp_path):
    make_options, words = BAD[name]
    options = make_options(tmp_path)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(MaskrtError) as info:
        page.page_state(**options)
    message = str(info.value)
    assert words in message and "\n" not in message
    with pytest.raises(MaskrtError) as info:
        page.write_page(tmp_path / "page.html", **options)
    assert str(info.value) == message
    assert sorted(os.listdir(tmp_path)) == before  # no page, no temporary file


def test_refuses_to_write_over_the_input_image(tmp_path):
    from PIL import Image

    image = tmp_path / "in.png"
    Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8)).save(image)
    original = image.read_bytes()
    with pytest.raises(MaskrtError, match="is one of the inputs"):
        page.write_page(image, image=str(image), features="luminance")
    with pytest.raises(MaskrtError, match="is one of the inputs"):
        page.write_page(tmp_path / "." / "in.png", image=str(image), features="luminance")
    assert image.read_bytes() == original and os.listdir(tmp_path) == ["in.png"]


def test_parse_box():
    assert page.parse_box(" 1, 2.5,3e1 ,40") == (1.0, 2.5, 30.0, 40.0)
    for bad in ("", "1,2,3", "1,2,3,4,5", "a,b,c,d", "1,2,inf,4", "1,2,nan,4"):
        with pytest.raises(MaskrtError) as info:
            page.parse_box(bad)
        assert "\n" not in str(info.value) and "x1,y1,x2,y2" in str(info.value)
