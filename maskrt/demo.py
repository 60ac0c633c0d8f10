"""``maskrt demo``: the whole path on the embedded shapes model, offline, into one folder.

1. a held-out validation set from the shapes generator (seed 1000; the embedded model trained on seed 1);
2. ONNX exports: portable fp32, portable fp16, the TensorRT-target graph (plugin nodes, fp32), and INT8 (explicit
   Q/DQ, :mod:`maskrt.export.int8`, calibrated on a few training scenes);
3. each export verified against the PyTorch deploy forward (the TensorRT-target graph through the ONNX Runtime
   plugin bridge);
4. COCO bbox/segm AP on every backend that runs here: PyTorch, ONNX Runtime fp32, fp16 and int8 (a TensorRT engine
   too where TensorRT and a GPU are present);
5. the same backends timed side by side (``maskrt bench``'s alternating order);
6. predictions drawn for a few images, and the interactive RoI Align page (:mod:`maskrt.explain.roi_align`) on
   a validation scene;
7. ``demo.json`` (everything above), ``report.html`` (self-contained: accuracy, verification, pictures,
   latency) and a short table in the terminal.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Optional

from maskrt.core.errors import MaskrtError
from maskrt.core.fileio import atomic_output, ensure_writable_folder, write_text_atomic

VALIDATION_SEED = 1000  # never used for training (the embedded model trained on data seed 1)
ARCH = "shapes"


@dataclass
class DemoSettings:
    out_dir: str = "maskrt-demo"
    images: int = 100  # validation images
    seed: int = VALIDATION_SEED
    iterations: int = 20  # timed iterations per backend
    warmup: int = 3
    draw: int = 4  # pictures in the report
    verify_images: int = 4
    calibration: int = 16  # INT8 calibration scenes, from the training data (seed 1)
    weights: Optional[str] = None  # default: the embedded weights

    def check(self) -> None:
        for name in ("images", "iterations", "verify_images", "calibration"):
            if getattr(self, name) < 1:
                raise MaskrtError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.draw < 0 or self.warmup < 0:
            raise MaskrtError("--draw and --warmup must be >= 0")
        if self.seed == 1:
            raise MaskrtError("seed 1 is the embedded model's training data; pick another --seed for validation")


def _png_data_uri(pil_image) -> str:
    buf = io.BytesIO()
    pil_image.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _tensorrt_available() -> Optional[str]:
    """None when a TensorRT engine can be built and run here, else the reason."""
    import importlib.util

    if importlib.util.find_spec("tensorrt") is None:
        return "TensorRT is not installed (pip install maskrt[gpu] on a machine with an NVIDIA GPU)"
    import torch

    if not torch.cuda.is_available():
        return "no CUDA device"
    return None


def run_demo(settings: DemoSettings, console=None) -> dict:
    """Run the demo; returns the summary written to ``demo.json``."""
    import torch
    from rich.console import Console

    from maskrt.backends.select import RunnerSpec
    from maskrt.data.images import read_image
    from maskrt.data.shapes import write_coco
    from maskrt.evaluation.coco import evaluate, load_coco
    from maskrt.evaluation.verify import verify_onnx
    from maskrt.export.onnx_export import to_onnx
    from maskrt.model import build, load_checkpoint
    from maskrt.model.presets import get_preset
    from maskrt.profiling.measure import ProfileSettings, bench
    from maskrt.profiling.render import to_html
    from maskrt.profiling.report import write_json

    settings.check()
    console = console or Console(stderr=True)
    began = time.perf_counter()
    preset = get_preset(ARCH)
    weights = settings.weights or preset.weights_path()
    if weights is None:
        raise MaskrtError(f"the {ARCH} preset's embedded weights are missing from this installation; pass --weights "
                          "FILE (from `maskrt train`)")
    if not os.path.isfile(weights):
        raise MaskrtError(f"weights not found: {weights}")
    torch.manual_seed(0)
    model = build(ARCH).eval()
    load_checkpoint(weights, model)  # a bad --weights file is refused before anything is generated or written
    out = settings.out_dir
    if os.path.exists(out) and not os.path.isdir(out):
        raise MaskrtError(f"output folder {out} is an existing file")
    ensure_writable_folder(out)
    timings: dict[str, float] = {}

    def step(name):
        timings[name] = round(time.perf_counter() - began - sum(timings.values()), 2)

    # 1. validation set
    console.print(f"[1/6] generating {settings.images} validation scenes (seed {settings.seed}) ...")
    ann = write_coco(os.path.join(out, "val"), settings.images, settings.seed)
    dataset = load_coco(ann, os.path.join(out, "val", "images"))
    step("dataset")

    # 2. exports
    input_size = tuple(preset.input_size)
    exports = {
        "fp32": dict(precision="fp32", target="portable"),
        "fp16": dict(precision="fp16", target="portable"),
        "tensorrt-target": dict(precision="fp32", target="tensorrt"),
    }
    paths, export_info = {}, {}
    for key, opts in exports.items():
        path = os.path.join(out, f"{ARCH}_{key.replace('-', '_')}.onnx")
        console.print(f"[2/6] exporting {key} -> {path}")
        res = to_onnx(model, path, input_size=input_size, **opts)
        paths[key] = res.path
        export_info[key] = {"path": os.path.basename(res.path), "size_bytes": res.size_bytes,
                            "seconds": round(res.seconds, 2), **opts}
    paths["int8"] = os.path.join(out, f"{ARCH}_int8.onnx")
    console.print(f"[2/6] quantizing to int8 on {settings.calibration} training scenes -> {paths['int8']}")
    export_info["int8"] = _int8(paths["fp32"], paths["int8"], os.path.join(out, "calibration"), settings.calibration)
    step("export")

    # 3. verification against PyTorch
    verify_images = [read_image(f) for f in dataset.files[: settings.verify_images]]
    sources = [os.path.basename(f) for f in dataset.files[: settings.verify_images]]
    verification = {}
    import importlib.util

    bridge = importlib.util.find_spec("onnxruntime_extensions") is not None
    for key, path in paths.items():
        if key == "tensorrt-target" and not bridge:
            verification[key] = {"ok": None, "skipped": "running plugin nodes in ONNX Runtime needs "
                                 "onnxruntime-extensions: pip install maskrt[bridge]"}
            console.print(f"[3/6] {key}: not verified ({verification[key]['skipped']})", markup=False)
            continue
        console.print(f"[3/6] verifying {key} against PyTorch on {len(verify_images)} images ...")
        rep = verify_onnx(model, path, verify_images, sources=sources)
        verification[key] = {"ok": rep.ok, "precision": rep.precision, "failures": rep.failures,
                             "max_box_diff_px": rep.worst("boxes"), "max_score_diff": rep.worst("scores"),
                             "max_mask_diff": rep.worst("masks"),
                             "min_mask_iou": min((i.mask_iou for i in rep.images), default=1.0),
                             "tolerances": rep.tolerances}
    step("verify")

    # 4. accuracy on each backend
    rows = [
        ("PyTorch fp32", RunnerSpec(weights, backend="torch", arch=ARCH, label=f"{ARCH} [torch]")),
        ("ONNX Runtime fp32", RunnerSpec(paths["fp32"], backend="onnxruntime", label=f"{ARCH}_fp32.onnx [onnxruntime]")),
        ("ONNX Runtime fp16", RunnerSpec(paths["fp16"], backend="onnxruntime", label=f"{ARCH}_fp16.onnx [onnxruntime]")),
        ("ONNX Runtime int8", RunnerSpec(paths["int8"], backend="onnxruntime", label=f"{ARCH}_int8.onnx [onnxruntime]")),
    ]
    trt_reason = _tensorrt_available()
    if trt_reason is None:
        engine = _build_engine(paths["tensorrt-target"], os.path.join(out, f"{ARCH}_fp32.engine"), console)
        rows.append(("TensorRT fp32", RunnerSpec(engine, backend="tensorrt", label=f"{ARCH}_fp32.engine [tensorrt]")))
    accuracy = []
    for name, spec in rows:
        console.print(f"[4/6] evaluating {name} on {dataset.num_images} images ...")
        res = evaluate(spec, dataset)
        accuracy.append({"backend": name, "bbox": res.metrics.get("bbox"), "segm": res.metrics.get("segm"),
                         "num_detections": res.num_detections, "seconds": round(res.seconds, 2)})
    ref = accuracy[0]
    for row in accuracy:
        for kind in ("bbox", "segm"):
            row[f"{kind}_ap_delta_points"] = round(100.0 * (row[kind]["AP"] - ref[kind]["AP"]), 3) + 0.0  # no -0.0
    step("evaluate")

    # 5. latency side by side
    console.print(f"[5/6] timing {len(rows)} backends side by side ({settings.iterations} iterations each) ...")
    prof = ProfileSettings(warmup_iterations=settings.warmup, warmup_seconds=0.0, iterations=settings.iterations)
    latency = bench([spec for _, spec in rows], batch=1, settings=prof)
    for run, acc in zip(latency.runs, accuracy):
        run.accuracy = {"bbox_ap": acc["bbox"]["AP"], "segm_ap": acc["segm"]["AP"], "dataset": os.path.abspath(ann)}
    write_json(latency, os.path.join(out, "latency.json"))
    step("latency")

    # 6. pictures
    pictures = _draw(paths["fp32"], dataset.files[: settings.draw], os.path.join(out, "pictures"))
    step("pictures")

    # 7. the RoI Align explainer, on the first validation scene and the embedded model's features
    from maskrt.explain.roi_align import write_page

    explainer = write_page(os.path.join(out, "explain_roi_align.html"), image=dataset.files[0])
    step("explainer")

    summary = {
        "schema": "maskrt.demo", "schema_version": 1, "arch": ARCH, "weights": os.path.abspath(weights),
        "settings": asdict(settings), "dataset": dataset.info(), "exports": export_info,
        "verification": verification, "accuracy": accuracy,
        "tensorrt": "ran" if trt_reason is None else f"not run: {trt_reason}",
        "latency": [{"backend": name, "median_ms": r.stat("model").median if r.stat("model") else None,
                     "p99_ms": r.stat("model").p99 if r.stat("model") else None,
                     "fps": r.stat("model").fps if r.stat("model") else None, "status": r.status}
                    for (name, _), r in zip(rows, latency.runs)],
        "explainer": os.path.basename(explainer),
        "seconds": timings,
    }
    summary["seconds"]["total"] = round(time.perf_counter() - began, 2)
    write_text_atomic(os.path.join(out, "demo.json"), json.dumps(summary, indent=2) + "\n")
    page = to_html(latency, title="maskrt demo: the embedded shapes model",
                   lead_sections=_html_sections(summary, pictures))
    report_path = os.path.join(out, "report.html")
    write_text_atomic(report_path, page)
    summary["report"] = os.path.abspath(report_path)
    return summary


def _int8(fp32_path: str, int8_path: str, calibration_dir: str, count: int) -> dict:
    """Quantize the fp32 export with ``count`` training scenes (seed 1) as calibration images."""
    from maskrt.core.metadata import ModelMeta
    from maskrt.core.onnxfile import load_onnx, metadata_props
    from maskrt.data.shapes import write_coco
    from maskrt.export.int8 import Int8Recipe, calibration_images, quantize_proto
    from maskrt.export.onnx_export import write_onnx_atomic
    from maskrt.inference.predictor import model_feeds

    start = time.perf_counter()
    write_coco(calibration_dir, count, 1)
    proto = load_onnx(fp32_path)
    meta = ModelMeta.from_props(metadata_props(proto), source=fp32_path)
    feeds = model_feeds(calibration_images(os.path.join(calibration_dir, "images"), count), meta)
    recipe = Int8Recipe()
    size = write_onnx_atomic(quantize_proto(proto, feeds, recipe), int8_path)
    return {"path": os.path.basename(int8_path), "size_bytes": size, "seconds": round(time.perf_counter() - start, 2),
            "precision": "int8", "target": "portable", "recipe": recipe.to_dict(), "calibration_images": count}


def _build_engine(onnx_path: str, engine_path: str, console) -> str:
    from maskrt.backends.trt.build import build_engine  # only reached where TensorRT is installed
    from maskrt.backends.trt.plan import BuildOptions

    console.print(f"[4/6] building a TensorRT engine from {os.path.basename(onnx_path)} ...")
    build_engine(onnx_path, engine_path, BuildOptions())
    return engine_path


def _draw(onnx_path: str, files, folder: str) -> list[tuple[str, str]]:
    from maskrt.backends.onnxrt.runner import OrtRunner
    from maskrt.data.draw import draw_detections
    from maskrt.inference import Predictor

    os.makedirs(folder, exist_ok=True)
    pictures = []
    with Predictor(OrtRunner(onnx_path, providers=["CPUExecutionProvider"]), score_threshold=0.5) as predictor:
        for f in files:
            image, _ = predictor.load(f)
            pil = draw_detections(image, predictor.predict([image])[0])
            with atomic_output(os.path.join(folder, os.path.basename(f))) as tmp:
                pil.save(tmp, format="PNG")
            pictures.append((os.path.basename(f), _png_data_uri(pil)))
    return pictures


def _pct(v) -> str:
    return "—" if v is None else f"{100.0 * v:.1f}"


def accuracy_rows(summary: dict) -> tuple[list[str], list[list[str]]]:
    header = ["backend", "bbox AP", "AP50", "AP75", "segm AP", "AP50", "AP75", "Δ bbox AP", "Δ segm AP", "detections"]
    rows = []
    for r in summary["accuracy"]:
        b, s = r["bbox"], r["segm"]
        rows.append([r["backend"], _pct(b["AP"]), _pct(b["AP50"]), _pct(b["AP75"]), _pct(s["AP"]), _pct(s["AP50"]),
                     _pct(s["AP75"]), f"{r['bbox_ap_delta_points']:+.2f}", f"{r['segm_ap_delta_points']:+.2f}",
                     str(r["num_detections"])])
    return header, rows


def _html_sections(summary: dict, pictures) -> str:
    from maskrt.profiling.render import html_table

    header, rows = accuracy_rows(summary)
    n = summary["dataset"].get("num_images", "?")
    parts = [f'<p class="note">What RoI Align computes, on this model\'s features: <a href="{html.escape(summary["explainer"])}">'
             "the interactive RoI Align / RoI Pool page</a>.</p>"] if summary.get("explainer") else []
    parts += ["<h2>Accuracy (COCO AP, %)</h2>",
             f'<p class="note">{html.escape(str(n))} held-out synthetic scenes (seed {summary["settings"]["seed"]}); '
             "Δ: AP points against PyTorch fp32. TensorRT: " + html.escape(summary["tensorrt"]) + "</p>",
             html_table(header, rows)]
    vh = ["graph", "result", "max |Δ box| px", "max |Δ score|", "max |Δ mask|", "min mask IoU"]
    vrows = [[k, "PASS" if v["ok"] else "FAIL", f"{v['max_box_diff_px']:.2e}", f"{v['max_score_diff']:.2e}",
              f"{v['max_mask_diff']:.2e}", f"{v['min_mask_iou']:.4f}"] if v["ok"] is not None
             else [k, "not run: " + v["skipped"], "—", "—", "—", "—"] for k, v in summary["verification"].items()]
    parts += ["<h2>Verification against PyTorch</h2>", html_table(vh, vrows, sortable=False)]
    if pictures:
        parts.append("<h2>Predictions (ONNX Runtime fp32, score ≥ 0.5)</h2><div>")
        parts += [f'<figure style="display:inline-block;margin:4px"><img src="{uri}" alt="{html.escape(name)}">'
                  f"<figcaption>{html.escape(name)}</figcaption></figure>" for name, uri in pictures]
        parts.append("</div>")
    return "\n".join(parts)




def print_summary(summary: dict, console=None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    table = Table(title="maskrt demo: shapes model, held-out set")
    for col in ("backend", "bbox AP", "segm AP", "Δ bbox", "Δ segm", "median ms", "FPS"):
        table.add_column(col, justify="left" if col == "backend" else "right")
    for acc, lat in zip(summary["accuracy"], summary["latency"]):
        table.add_row(acc["backend"], _pct(acc["bbox"]["AP"]), _pct(acc["segm"]["AP"]),
                      f"{acc['bbox_ap_delta_points']:+.2f}", f"{acc['segm_ap_delta_points']:+.2f}",
                      "—" if lat["median_ms"] is None else f"{lat['median_ms']:.1f}",
                      "—" if lat["fps"] is None else f"{lat['fps']:.1f}")
    console.print(table)
    bad = [k for k, v in summary["verification"].items() if v["ok"] is False]
    skipped = [k for k, v in summary["verification"].items() if v["ok"] is None]
    line = "all passed" if not bad else "FAILED for " + ", ".join(bad)
    if skipped:
        line += f" (not run: {', '.join(skipped)}; pip install maskrt[bridge])"
    console.print("verification against PyTorch: " + line, markup=False)
    console.print(f"TensorRT: {summary['tensorrt']}", markup=False)
    console.print(f"report: {summary['report']}  ({summary['seconds']['total']:.0f} s)", markup=False)
