"""A bounded fuzzing run over maskrt's readers and commands: how many bad inputs get a clean answer.

Random mutations of valid inputs (seeded, so a run can be repeated):

* the image reader (``maskrt.data.images.read_image``): PNG (8- and 16-bit, palette, LA), JPEG (RGB, CMYK,
  EXIF-rotated), GIF, BMP, TIFF and WebP files truncated, bit-flipped, overwritten, spliced, with rewritten PNG
  dimensions (decompression bombs), and valid images of odd shapes (1x1, 1xN, Nx1);
* the checkpoint loader (``maskrt.model.load_checkpoint`` into the shapes model): .pth and .safetensors bytes
  mutated, and state_dicts with keys dropped, tensors reshaped, retyped or replaced by other values;
* the ONNX metadata reader (``ModelMeta.from_props`` on an export's metadata_props, and ``load_onnx`` on
  mutated file bytes);
* the COCO loader (``maskrt.evaluation.coco.load_coco`` and scoring): JSON values deleted, retyped and replaced
  (negative, NaN, huge, wrong types), entries duplicated, and text truncated or bit-flipped;
* the command line, in-process through click's CliRunner: mutated images for predict / detect / explain /
  profile --images, mutated ONNX files for check / predict, mutated COCO files for eval, and bad numbers and
  text for the options of every verb whose valid run is short.

A case is *clean* when the reader returns or raises MaskrtError, or the command exits 0, or exits non-zero with
``error: <one line>`` as its last line, no exception escaping, no temporary file left and no input changed.
Anything else (an escaped exception, a missing error line, a leftover file, a run over the time limit) is a
*failure* and is recorded with its input. Writes ``benchmarks/results/bad_input_fuzz.json``.

    nice -n 10 python benchmarks/bad_input_fuzz.py --seconds 20      # about 20 s per target
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import hashlib
import io
import json
import os
import platform
import random
import shutil
import signal
import struct
import sys
import tempfile
import time
import traceback
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))


class Hang(BaseException):
    """A case ran past the per-case time limit."""


@contextlib.contextmanager
def time_limit(seconds: int):
    def on_alarm(signum, frame):
        raise Hang(f"over {seconds} s")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


# -- mutations ---------------------------------------------------------------------------------------------------
def mutate_bytes(data: bytes, rng: random.Random, region: int | None = None) -> tuple[bytes, str]:
    """One random byte-level mutation (``region``: restrict edits to the first/last ``region`` bytes)."""
    b = bytearray(data)
    n = len(b)

    def pos():
        if region and n > 2 * region:
            return rng.randrange(region) if rng.random() < 0.5 else n - 1 - rng.randrange(region)
        return rng.randrange(max(n, 1))

    op = rng.choice(["truncate", "bitflip", "overwrite", "insert", "delete", "zero-tail", "empty", "duplicate"])
    if op == "truncate":
        cut = rng.randrange(n) if n else 0
        return bytes(b[:cut]), f"truncate to {cut} of {n} bytes"
    if op == "bitflip":
        k = rng.choice([1, 2, 8, 64])
        for _ in range(k):
            i = pos()
            if i < n:
                b[i] ^= 1 << rng.randrange(8)
        return bytes(b), f"flip {k} bit(s)"
    if op == "overwrite":
        i, k = pos(), rng.choice([1, 4, 16, 256])
        b[i:i + k] = bytes(rng.randrange(256) for _ in range(k))
        return bytes(b[:n]), f"overwrite {k} bytes at {i}"
    if op == "insert":
        i, k = pos(), rng.choice([1, 7, 100])
        return bytes(b[:i] + bytes(rng.randrange(256) for _ in range(k)) + b[i:]), f"insert {k} bytes at {i}"
    if op == "delete":
        i, k = pos(), rng.choice([1, 9, 300])
        return bytes(b[:i] + b[i + k:]), f"delete {k} bytes at {i}"
    if op == "zero-tail":
        i = pos()
        return bytes(b[:i]) + bytes(n - i), f"zero from {i}"
    if op == "empty":
        return b"", "empty file"
    i = pos()
    return bytes(b[:i] + b[:i]), f"duplicate the first {i} bytes"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_with_size(width: int, height: int, mode_bytes=(8, 0)) -> bytes:
    """A PNG whose header claims width x height (valid CRCs; a tiny IDAT)."""
    ihdr = struct.pack(">IIBBBBB", width, height, mode_bytes[0], mode_bytes[1], 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + \
        _png_chunk(b"IEND", b"")


def valid_images() -> list[tuple[str, bytes]]:
    """(extension, bytes) of valid images in many formats and modes, from a generated scene."""
    import numpy as np
    from PIL import Image

    from maskrt.data.images import synthetic_image

    rgb = Image.fromarray(synthetic_image(48, 64, 7).permute(1, 2, 0).numpy())
    out = []

    def save(im, fmt, ext, **kw):
        buf = io.BytesIO()
        im.save(buf, format=fmt, **kw)
        out.append((ext, buf.getvalue()))

    save(rgb, "PNG", ".png")
    save(Image.fromarray(np.asarray(rgb.convert("L"), dtype=np.uint16) * 257), "PNG", ".png")  # 16-bit
    save(rgb.convert("P"), "PNG", ".png")
    save(rgb.convert("LA"), "PNG", ".png")
    save(rgb.convert("RGBA"), "PNG", ".png")
    save(rgb, "JPEG", ".jpg", quality=80)
    save(rgb.convert("CMYK"), "JPEG", ".jpg")
    exif = Image.Exif()
    exif[0x0112] = 6
    save(rgb, "JPEG", ".jpg", exif=exif.tobytes())
    save(rgb.convert("P"), "GIF", ".gif")
    save(rgb, "BMP", ".bmp")
    save(rgb, "TIFF", ".tif")
    with contextlib.suppress(Exception):
        save(rgb, "WEBP", ".webp")
    return out


def image_case(rng: random.Random, sources) -> tuple[str, bytes, str]:
    """(extension, bytes, description) of one bad (or odd) image."""
    import numpy as np
    from PIL import Image

    roll = rng.random()
    if roll < 0.12:
        w, h = rng.choice([(1, 1), (1, 300), (300, 1), (2, 2), (3000, 1), (1, 2000), (31, 33)])
        buf = io.BytesIO()
        Image.fromarray(np.full((h, w, 3), rng.randrange(256), np.uint8)).save(buf, format="PNG")
        return ".png", buf.getvalue(), f"valid {w}x{h} image"
    if roll < 0.22:
        w = rng.choice([0, 1, 15000, 40000, 2**31 - 1, 65535, rng.randrange(1, 100000)])
        h = rng.choice([0, 1, 15000, 40000, 2**31 - 1, 65535, rng.randrange(1, 100000)])
        depth = rng.choice([(8, 0), (8, 2), (16, 2), (8, 3), (1, 0), (8, 6)])
        return ".png", png_with_size(w, h, depth), f"PNG header claiming {w}x{h} (depth/type {depth})"
    if roll < 0.27:
        return rng.choice([".png", ".jpg"]), bytes(rng.randrange(256) for _ in range(rng.choice([0, 10, 1000]))), \
            "random bytes"
    ext, data = rng.choice(sources)
    mutated, how = mutate_bytes(data, rng)
    return ext, mutated, f"{ext} {how}"


_JUNK = [None, -1, 0, 1, 2**70, -2**63, 1e300, float("nan"), float("inf"), "x", "", "../../etc/passwd", [], {},
         [1, 2], {"a": 1}, True, False, [[1, 2, 3]], "1,2", -0.5]


def mutate_json(obj, rng: random.Random):
    """One structural mutation somewhere in a JSON tree: delete, retype, replace, duplicate, empty."""
    obj = copy.deepcopy(obj)
    path, node = [], obj
    while isinstance(node, (dict, list)) and node and rng.random() < 0.8:
        key = rng.choice(list(node)) if isinstance(node, dict) else rng.randrange(len(node))
        path.append(key)
        if not isinstance(node[key], (dict, list)):
            break
        node = node[key]
    if not path:
        return rng.choice(_JUNK), "whole document replaced"
    parent = obj
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    op = rng.choice(["delete", "junk", "junk", "duplicate", "empty"])
    where = "/".join(str(p) for p in path)
    if op == "delete":
        del parent[key]
    elif op == "junk":
        parent[key] = rng.choice(_JUNK)
    elif op == "duplicate" and isinstance(parent, list):
        parent.append(copy.deepcopy(parent[key]))
    else:
        parent[key] = type(parent[key])() if isinstance(parent[key], (dict, list, str)) else 0
    return obj, f"{op} at {where}"


# -- the harness -------------------------------------------------------------------------------------------------
class Target:
    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind
        self.tried = self.clean = 0
        self.outcomes: dict[str, int] = {}
        self.failures: list[dict] = []
        self.messages: list[str] = []  # a sample of the distinct error lines, to read
        self.seconds = 0.0

    def record(self, outcome: str, detail: dict) -> None:
        self.tried += 1
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1
        if outcome.startswith("clean"):
            self.clean += 1
            message = detail.get("message")
            if message and message not in self.messages and len(self.messages) < 12:
                self.messages.append(message)
        elif len(self.failures) < 8:
            self.failures.append({"outcome": outcome, **detail})

    def to_dict(self) -> dict:
        return {"target": self.name, "kind": self.kind, "tried": self.tried, "clean": self.clean,
                "failures": self.tried - self.clean, "outcomes": self.outcomes, "seconds": round(self.seconds, 1),
                "failure_examples": self.failures, "error_line_sample": self.messages}


def api_case(target: Target, fn, detail: dict, limit: int) -> None:
    from maskrt.core.errors import MaskrtError

    try:
        with time_limit(limit):
            fn()
        target.record("clean: accepted", detail)
    except MaskrtError:
        target.record("clean: MaskrtError", detail)
    except Hang as e:
        target.record("hang", {**detail, "error": str(e)})
    except KeyboardInterrupt:
        raise
    except BaseException as e:
        target.record("traceback", {**detail, "error": f"{type(e).__name__}: {str(e)[:300]}",
                                    "where": traceback.format_exc().strip().splitlines()[-3][:200]})


def digest(paths) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()


def cli_case(target: Target, argv: list[str], detail: dict, work: str, inputs: list[str], limit: int,
             allowed=(0, 2)) -> None:
    from click.testing import CliRunner

    from maskrt.cli.app import cli

    before = digest(inputs)
    detail = {**detail, "argv": [a.replace(work, "$WORK") for a in argv]}
    try:
        with time_limit(limit):
            r = CliRunner().invoke(cli, argv, catch_exceptions=True)
    except Hang as e:
        target.record("hang", {**detail, "error": str(e)})
        return
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    leftovers = [os.path.join(d, f) for d, _, fs in os.walk(work) for f in fs if f.endswith(".tmp")]
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        tb = "".join(traceback.format_exception(r.exception)).strip().splitlines()
        target.record("traceback", {**detail, "error": f"{type(r.exception).__name__}: {str(r.exception)[:300]}",
                                    "where": (tb[-3] if len(tb) > 2 else "")[:200]})
    elif "Traceback" in r.output:
        target.record("traceback", {**detail, "error": r.output.strip().splitlines()[-1][:300]})
    elif leftovers:
        target.record("leftover files", {**detail, "files": leftovers[:3]})
    elif digest(inputs) != before:
        target.record("input changed", detail)
    elif r.exit_code == 0:
        target.record("clean: exit 0", detail)
    elif r.exit_code in allowed and last.startswith("error: "):
        target.record("clean: error line", {**detail, "message": last[:200]})
    else:
        target.record(f"exit {r.exit_code} without an error line", {**detail, "last": last[:200]})


def run_for(seconds: float, cases: int, body) -> None:
    end = time.monotonic() + seconds
    k = 0
    while k < cases and time.monotonic() < end:
        body(k)
        k += 1


BAD_VALUES = ["0", "-1", "1", "2", "nan", "inf", "-inf", "1e309", "1e-9", "99999999999999999999", "", "abc",
              "1,2,,3", "0x0", "-5x10", "64x64", "100000x100000", "1.5", " 3 ", "0.5", "-0.0", "1/2", "\u00bd",
              "3x", "x3", "7,7", "0,0,10,10", "10,10,0,0", "-5,-5,5,5", "1e3"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=15.0, help="Time per target (default 15).")
    ap.add_argument("--cases", type=int, default=400, help="At most this many cases per target.")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--case-limit", type=int, default=90, help="Seconds one case may take before it counts as a hang.")
    ap.add_argument("--only", default=None, help="Comma-separated target names to run.")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "bad_input_fuzz.json"))
    args = ap.parse_args()

    import warnings

    import torch

    from maskrt.core.fileio import write_text_atomic
    from maskrt.core.metadata import ModelMeta
    from maskrt.core.onnxfile import load_onnx, metadata_props
    from maskrt.data.images import read_image
    from maskrt.data.shapes import write_coco
    from maskrt.evaluation.coco import load_coco, score
    from maskrt.model import build, load_checkpoint
    from maskrt.model.presets import get_preset
    from maskrt.train import inference_state_dict

    warnings.simplefilter("ignore")
    torch.set_num_threads(1)
    began = time.perf_counter()
    rng = random.Random(args.seed)
    work = tempfile.mkdtemp(prefix="maskrt-fuzz-")
    inputs_dir = os.path.join(work, "inputs")
    os.makedirs(inputs_dir)
    print(f"setting up in {work} ...", flush=True)

    from click.testing import CliRunner

    from maskrt.cli.app import cli

    onnx_path = os.path.join(inputs_dir, "s.onnx")
    r = CliRunner().invoke(cli, ["export", "--arch", "shapes", "--input-size", "128x128", "-o", onnx_path])
    assert r.exit_code == 0, r.output
    ann_path = write_coco(os.path.join(inputs_dir, "ds"), 2, 5)
    images_dir = os.path.join(inputs_dir, "ds", "images")
    with open(ann_path) as f:
        coco = json.load(f)
    sources = valid_images()
    img_path = os.path.join(inputs_dir, "img.png")
    with open(img_path, "wb") as f:
        f.write(sources[0][1])
    shapes_weights = get_preset("shapes").weights_path()
    model = build("shapes").eval()
    state = inference_state_dict(load_checkpoint(shapes_weights, model))
    pth_path = os.path.join(inputs_dir, "shapes.pth")
    torch.save(state, pth_path)
    with open(pth_path, "rb") as f:
        pth_bytes = f.read()
    with open(shapes_weights, "rb") as f:
        st_bytes = f.read()
    with open(onnx_path, "rb") as f:
        onnx_bytes = f.read()
    props = metadata_props(load_onnx(onnx_path))
    input_files = [onnx_path, ann_path, img_path, pth_path] + [os.path.join(images_dir, n)
                                                                for n in os.listdir(images_dir)]
    targets: list[Target] = []
    only = set(args.only.split(",")) if args.only else None

    def case_dir(k: int) -> str:
        d = os.path.join(work, f"case{len(targets)}_{k}")
        os.makedirs(d)
        return d

    def target(name, kind):
        t = Target(name, kind)
        if only is None or name in only:
            targets.append(t)
            return t
        return None

    def timed(t, body, seconds=None, cases=None):
        if t is None:
            return
        print(f"{t.name} ...", end=" ", flush=True)
        t0 = time.perf_counter()
        run_for(seconds or args.seconds, cases or args.cases, body)
        t.seconds = time.perf_counter() - t0
        print(f"{t.tried} tried, {t.clean} clean", flush=True)

    # 1. the image reader
    t = target("image reader", "api")

    def image_body(k):
        ext, data, how = image_case(rng, sources)
        path = os.path.join(case_dir(k), "x" + ext)
        with open(path, "wb") as f:
            f.write(data)

        def read():
            img = read_image(path)
            assert img.dtype == torch.uint8 and img.dim() == 3 and img.shape[0] == 3 and min(img.shape) >= 1, img.shape

        api_case(t, read, {"input": how}, args.case_limit)

    timed(t, image_body)

    # 2. the checkpoint loader
    t = target("checkpoint loader", "api")
    probe = build("shapes").eval()

    def checkpoint_body(k):
        d = case_dir(k)
        roll = rng.random()
        if roll < 0.4:
            data, how = mutate_bytes(pth_bytes, rng, region=4096 if rng.random() < 0.7 else None)
            path, how = os.path.join(d, "w.pth"), f".pth {how}"
            with open(path, "wb") as f:
                f.write(data)
        elif roll < 0.7:
            data, how = mutate_bytes(st_bytes, rng, region=4096 if rng.random() < 0.8 else None)
            path, how = os.path.join(d, "w.safetensors"), f".safetensors {how}"
            with open(path, "wb") as f:
                f.write(data)
        else:
            sd = dict(state)
            key = rng.choice(list(sd))
            op = rng.choice(["drop", "reshape", "dtype", "scalar", "string", "nested", "empty", "nan", "list"])
            if op == "drop":
                del sd[key]
            elif op == "reshape":
                sd[key] = sd[key].reshape(-1)[: max(1, sd[key].numel() // 2)]
            elif op == "dtype":
                sd[key] = sd[key].to(rng.choice([torch.int64, torch.float16, torch.bool, torch.uint8, torch.float64]))
            elif op == "scalar":
                sd[key] = 3
            elif op == "string":
                sd[key] = "weights"
            elif op == "nested":
                sd = {"model": {"state_dict": sd}}
            elif op == "empty":
                sd = {}
            elif op == "nan":
                sd[key] = torch.full_like(sd[key], float("nan"))
            else:
                sd = [sd[key]]
            path, how = os.path.join(d, "w.pth"), f"state_dict {op} {key}"
            torch.save(sd, path)
        api_case(t, lambda: load_checkpoint(path, probe), {"input": how}, args.case_limit)

    timed(t, checkpoint_body)

    # 3. the ONNX metadata reader
    t = target("onnx metadata reader", "api")

    def meta_body(k):
        if rng.random() < 0.75:
            p = dict(props)
            key = rng.choice(list(p))
            op = rng.choice(["delete", "junk", "json-junk", "deep", "empty"])
            if op == "delete":
                del p[key]
            elif op == "junk":
                p[key] = rng.choice(BAD_VALUES)
            elif op == "json-junk":
                p[key] = json.dumps(rng.choice(_JUNK))
            elif op == "deep":
                p[key] = "[" * rng.choice([10, 1000, 100000]) + "]" * rng.choice([0, 10])
            else:
                p[key] = ""
            api_case(t, lambda: ModelMeta.from_props(p, "fuzz.onnx"), {"input": f"metadata {op} {key}"},
                     args.case_limit)
        else:
            data, how = mutate_bytes(onnx_bytes, rng, region=8192 if rng.random() < 0.7 else None)
            path = os.path.join(case_dir(k), "m.onnx")
            with open(path, "wb") as f:
                f.write(data)
            api_case(t, lambda: ModelMeta.from_props(metadata_props(load_onnx(path)), path), {"input": f".onnx {how}"},
                     args.case_limit)

    timed(t, meta_body)

    # 4. the COCO loader (and scoring, which hands the annotations to pycocotools)
    t = target("coco loader", "api")

    def coco_body(k):
        d = case_dir(k)
        path = os.path.join(d, "a.json")
        if rng.random() < 0.8:
            data, how = coco, ""
            for _ in range(rng.choice([1, 1, 2, 3])):
                data, step = mutate_json(data, rng)
                how += step + "; "
            with open(path, "w") as f:
                json.dump(data, f)
        else:
            raw, how = mutate_bytes(json.dumps(coco).encode(), rng)
            with open(path, "wb") as f:
                f.write(raw)

        def load_and_score():
            ds = load_coco(path, images_dir)
            score(ds, [])

        api_case(t, load_and_score, {"input": how.strip("; ")}, args.case_limit)

    timed(t, coco_body)

    # 5. commands with mutated files
    t = target("cli predict (bad images)", "cli")

    def predict_body(k):
        d = case_dir(k)
        ext, data, how = image_case(rng, sources)
        path = os.path.join(d, "x" + ext)
        with open(path, "wb") as f:
            f.write(data)
        cli_case(t, ["predict", onnx_path, path, "--out", os.path.join(d, "out")], {"input": how}, work,
                 input_files, args.case_limit)

    timed(t, predict_body)

    t = target("cli profile --images (bad images)", "cli")

    def profile_images_body(k):
        d = case_dir(k)
        ext, data, how = image_case(rng, sources)
        folder = os.path.join(d, "imgs")
        os.makedirs(folder)
        with open(os.path.join(folder, "x" + ext), "wb") as f:
            f.write(data)
        cli_case(t, ["profile", onnx_path, "--images", folder, "--iterations", "1", "--warmup", "0"], {"input": how},
                 work, input_files, args.case_limit)

    timed(t, profile_images_body)

    t = target("cli detect/explain --image (bad images)", "cli")

    def detect_body(k):
        d = case_dir(k)
        ext, data, how = image_case(rng, sources)
        path = os.path.join(d, "x" + ext)
        with open(path, "wb") as f:
            f.write(data)
        if k % 2:
            argv = ["explain", "roi-align", "--image", path, "--out", os.path.join(d, "e.html")]
        else:
            argv = ["detect", "--image", path, "--min-size", "64", "--max-size", "64", "--top", "1"]
        cli_case(t, argv, {"input": how}, work, input_files, args.case_limit)

    timed(t, detect_body)

    t = target("cli check/predict (bad .onnx)", "cli")

    def onnx_body(k):
        d = case_dir(k)
        data, how = mutate_bytes(onnx_bytes, rng, region=8192 if rng.random() < 0.7 else None)
        path = os.path.join(d, "m.onnx")
        with open(path, "wb") as f:
            f.write(data)
        if k % 2:
            cli_case(t, ["check", path], {"input": how}, work, input_files, args.case_limit, allowed=(1, 2))
        else:
            cli_case(t, ["predict", path, img_path, "--out", os.path.join(d, "out")], {"input": how}, work,
                     input_files, args.case_limit)

    timed(t, onnx_body)

    t = target("cli eval (bad COCO)", "cli")

    def eval_body(k):
        d = case_dir(k)
        data, how = mutate_json(coco, rng)
        path = os.path.join(d, "a.json")
        with open(path, "w") as f:
            json.dump(data, f)
        cli_case(t, ["eval", onnx_path, "--coco", path, "--images", images_dir, "--limit", "1", "--json",
                     os.path.join(d, "e.json")], {"input": how}, work, input_files, args.case_limit)

    timed(t, eval_body)

    # 6. bad numbers and text for options (valid runs of these commands are short)
    verbs = {
        "predict": (lambda d: ["predict", onnx_path, img_path, "--out", os.path.join(d, "out")],
                    ["--score-threshold", "--max-pixels", "--input-size", "--num-classes"]),
        "profile": (lambda d: ["profile", onnx_path, "--iterations", "1", "--warmup", "0"],
                    ["--batch", "--iterations", "--warmup", "--warmup-seconds", "--duration", "--input-size"]),
        "eval": (lambda d: ["eval", onnx_path, "--coco", ann_path, "--limit", "1"],
                 ["--limit", "--batch", "--score-threshold", "--num-classes"]),
        "bench": (lambda d: ["bench", onnx_path, "--iterations", "1", "--warmup", "0"],
                  ["--batch", "--iterations", "--dataset-limit", "--warmup-seconds", "--duration"]),
        "detect": (lambda d: ["detect", "--size", "48x64", "--min-size", "64", "--max-size", "64", "--top", "1"],
                   ["--size", "--seed", "--min-size", "--max-size", "--score-threshold", "--top", "--num-classes"]),
        "check": (lambda d: ["check", onnx_path], ["--max-batch", "--tensorrt"]),
        "build": (lambda d: ["build", onnx_path, "-o", os.path.join(d, "m.engine")],
                  ["--workspace", "--min-batch", "--opt-batch", "--max-batch", "--min-shape", "--opt-shape",
                   "--max-shape", "--optimization-level"]),
        "explain": (lambda d: ["explain", "roi-align", "--luminance", "--out", os.path.join(d, "e.html")],
                    ["--box", "--output-size", "--sampling-ratio", "--seed"]),
        "train": (lambda d: ["train", "--out", os.path.join(d, "t"), "--iterations", "1", "--batch-size", "1",
                             "--warmup", "0", "--dataset-size", "2", "--checkpoint-every", "1"],
                  ["--lr", "--weight-decay", "--warmup", "--batch-size", "--seed", "--data-seed", "--dataset-size",
                   "--checkpoint-every"]),
        "data": (lambda d: ["data", "shapes", "--count", "1", "--out", os.path.join(d, "ds")], ["--seed"]),
        "export": (lambda d: ["export", "--arch", "shapes", "-o", os.path.join(d, "x.onnx")],
                   ["--input-size", "--min-size", "--max-size", "--batch", "--opset", "--max-detections",
                    "--score-threshold", "--num-classes"]),
    }
    for verb, (base, options) in verbs.items():
        t = target(f"cli {verb} (bad option values)", "cli")

        def options_body(k, base=base, options=options, t=t, verb=verb):
            d = case_dir(k)
            argv = base(d)
            chosen = rng.sample(options, k=min(len(options), rng.choice([1, 1, 2])))
            values = []
            for option in chosen:
                value = rng.choice(BAD_VALUES)
                if verb == "export" and value in ("1", "2", "64x64", " 3 ", "7,7", "1e3"):
                    value = rng.choice(["0", "-1", "nan", "abc"])  # a valid export takes a minute on 2 cores
                values += [option, value]
            cli_case(t, argv + values, {"input": " ".join(f"{a}={b!r}" for a, b in zip(values[::2], values[1::2]))},
                     work, input_files, args.case_limit)

        timed(t, options_body, seconds=args.seconds / 2)

    total = {"tried": sum(t.tried for t in targets), "clean": sum(t.clean for t in targets)}
    total["failures"] = total["tried"] - total["clean"]
    report = {
        "schema": "maskrt.bad-input-fuzz", "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count(),
                    "torch": torch.__version__},
        "settings": {"seconds_per_target": args.seconds, "max_cases_per_target": args.cases, "seed": args.seed,
                     "case_limit_s": args.case_limit},
        "seconds": round(time.perf_counter() - began, 1),
        "total": total,
        "targets": [t.to_dict() for t in targets],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    write_text_atomic(args.json, json.dumps(report, indent=1, default=str) + "\n")
    print(f"{'target':44s} {'tried':>6s} {'clean':>6s} {'fail':>5s}")
    for t in targets:
        print(f"{t.name:44s} {t.tried:6d} {t.clean:6d} {t.tried - t.clean:5d}")
    print(f"{'total':44s} {total['tried']:6d} {total['clean']:6d} {total['failures']:5d}")
    for t in targets:
        for f in t.failures[:3]:
            print(f"  {t.name}: {f['outcome']}: {f.get('input', '')} -> {f.get('error') or f.get('last') or ''}"[:300])
    print(f"wrote {args.json}")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
