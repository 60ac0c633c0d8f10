#!/usr/bin/env python
"""INT8 (explicit Q/DQ) against fp32 and fp16: accuracy per recipe, per-part sensitivity, CPU latency, R50-FPN.

    nice -n 10 python benchmarks/int8.py [--images 150] [--calibration 64] [--skip-r50] [--json OUT]

Shapes model (embedded weights):
  * a held-out set of ``--images`` scenes (seed 1000, as ``maskrt demo``); calibration images are the first
    ``--calibration`` scenes of the training data (seed 1): images like the ones the model will see;
  * fp32 and fp16 exports, and INT8 per recipe (minmax, percentile 99.999, entropy; all parts quantized), each
    evaluated with ``maskrt eval``'s code (ONNX Runtime, CPU) for COCO bbox/segm AP;
  * sensitivity: minmax with one part quantized at a time (the rest float) on the same held-out set, and minmax
    with the most sensitive part kept in float;
  * CPU latency of fp32, fp16 and the default INT8 in ONNX Runtime (``maskrt bench``'s alternating order).

R50-FPN (random weights, seeded): exported at a small canvas (320x448, to keep the run to minutes on a CPU),
quantized with 8 calibration scenes, and verified against its fp32 export at the tensor level: the five FPN
levels and the RPN head outputs on 4 generated images must agree with relative RMS error <= 0.25 and cosine
similarity >= 0.97 (see ``R50_TOLERANCE``). Detections of random weights are not compared: with uniform-ish
scores, which boxes pass NMS and the top-100 cut is decided by noise, in fp32 already. Q/DQ counts per part.

Writes benchmarks/results/int8.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

#: R50 random weights, fp32 ONNX vs INT8 ONNX on the same canvases. Each of the 86 quantized layers rounds its input
#: to 8 bits (relative RMS error about 1/(127*sqrt(3)) of the range per tensor, more where the range is set by
#: rare outliers); the errors add up through the trunk and FPN. Random weights have no trained structure to
#: keep activations in a narrow range, so this is a loose bound on a worst case: features must stay within 25 %
#: RMS of fp32 and point the same way (cosine >= 0.97).
R50_TOLERANCE = {"relative_rms": 0.25, "cosine": 0.97}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def evaluate(path, dataset, name):
    from maskrt.evaluation.int8 import evaluate_onnx

    row = evaluate_onnx(path, dataset, name)
    log(f"{name}: bbox {row.bbox:.2f} segm {row.segm:.2f} ({row.seconds:.0f} s)")
    return row


def shapes(args, work):
    import onnx
    import torch

    from maskrt.core.metadata import ModelMeta
    from maskrt.data.shapes import write_coco
    from maskrt.evaluation.coco import load_coco
    from maskrt.evaluation.int8 import with_drops
    from maskrt.export.int8 import PARTS, Int8Recipe, calibration_images, qdq_counts, quantize_proto
    from maskrt.export.onnx_export import export_model_proto, write_onnx_atomic
    from maskrt.inference.predictor import model_feeds
    from maskrt.model import build, load_checkpoint
    from maskrt.model.presets import get_preset

    preset = get_preset("shapes")
    log(f"generating {args.images} held-out scenes (seed 1000) and {args.calibration} calibration scenes (seed 1)")
    ann = write_coco(os.path.join(work, "val"), args.images, 1000)
    dataset = load_coco(ann, os.path.join(work, "val", "images"))
    write_coco(os.path.join(work, "calib"), args.calibration, 1)
    torch.manual_seed(0)
    model = build("shapes").eval()
    load_checkpoint(preset.weights_path(), model)
    paths, protos = {}, {}
    for precision in ("fp32", "fp16"):
        protos[precision] = export_model_proto(model, input_size=tuple(preset.input_size), precision=precision)
        paths[precision] = os.path.join(work, f"shapes_{precision}.onnx")
        write_onnx_atomic(protos[precision], paths[precision])
    fp32 = protos["fp32"]
    meta = ModelMeta.from_props({p.key: p.value for p in fp32.metadata_props})
    images = calibration_images(os.path.join(work, "calib", "images"), args.calibration)
    t = time.perf_counter()
    feeds = model_feeds(images, meta)
    prep_s = time.perf_counter() - t

    ref = evaluate(paths["fp32"], dataset, "fp32")
    rows = [ref]
    if not (args.skip_sensitivity and args.skip_latency):
        rows.append(with_drops(ref, evaluate(paths["fp16"], dataset, "fp16")))
    recipes = {}
    for method in args.methods.split(","):
        recipe = Int8Recipe(method=method)
        t = time.perf_counter()
        cache = os.path.join(work, f"calibration-{method}.json")
        proto = quantize_proto(fp32, feeds, recipe, cache=cache)
        q_s = time.perf_counter() - t
        path = os.path.join(work, f"shapes_int8_{method}.onnx")
        onnx.save(proto, path)
        paths[f"int8 {method}"] = path
        row = with_drops(ref, evaluate(path, dataset, f"int8 {recipe.name}"))
        rows.append(row)
        recipes[method] = {"recipe": recipe.to_dict(), "quantize_seconds": round(q_s, 1), **row.to_dict()}

    sensitivity = []
    if not args.skip_sensitivity:
        cache = os.path.join(work, "calibration-minmax.json")
        for part in PARTS:
            proto = quantize_proto(fp32, feeds, Int8Recipe(keep_float=tuple(p for p in PARTS if p != part)),
                                   cache=cache)
            path = os.path.join(work, "sens.onnx")
            onnx.save(proto, path)
            row = with_drops(ref, evaluate(path, dataset, f"int8 only {part}"))
            sensitivity.append({"part": part, **row.to_dict()})
        worst = max(sensitivity, key=lambda r: max(r["bbox_drop"], r["segm_drop"]))["part"]
        recipe = Int8Recipe(keep_float=(worst,))
        proto = quantize_proto(fp32, feeds, recipe, cache=cache)
        path = os.path.join(work, "shapes_int8_keep.onnx")
        onnx.save(proto, path)
        row = with_drops(ref, evaluate(path, dataset, f"int8 {recipe.name}"))
        rows.append(row)
        recipes[f"minmax, float {worst}"] = {"recipe": recipe.to_dict(), **row.to_dict()}

    result = {
        "held_out": {"seed": 1000, "images": dataset.num_images},
        "calibration": {"source": "training scenes (seed 1)", "images": len(images),
                        "prepare_seconds": round(prep_s, 1)},
        "accuracy": [r.to_dict() for r in rows],
        "recipes": recipes,
        "sensitivity": sensitivity,
    }
    if "minmax" in recipes:
        result["qdq_per_part"] = qdq_counts(onnx.load(paths["int8 minmax"]))
    if args.skip_latency:
        return result
    log("timing fp32, fp16 and int8 (minmax) in ONNX Runtime on the CPU ...")
    from maskrt.backends.select import RunnerSpec
    from maskrt.profiling.measure import ProfileSettings, bench

    timed = {"fp32": paths["fp32"], "fp16": paths["fp16"], "int8 minmax": paths["int8 minmax"],
             "int8 percentile": paths["int8 percentile"]}
    specs = [RunnerSpec(p, backend="onnxruntime", label=k) for k, p in timed.items()]
    report = bench(specs, batch=1, settings=ProfileSettings(warmup_iterations=5, warmup_seconds=0.0,
                                                            iterations=args.iterations))
    latency = {}
    for key, run in zip(timed, report.runs):
        s = run.stat("model")
        latency[key] = {"median_ms": round(s.median, 2), "p90_ms": round(s.p90, 2), "iterations": s.count,
                        "status": run.status, "providers": run.providers}
        log(f"{key}: median {s.median:.1f} ms")
    result["latency_cpu_onnxruntime_batch1"] = latency
    return result


def merge(previous: dict, new: dict) -> dict:
    """A partial run (some --methods, no sensitivity or latency) updates the previous shapes results: its rows
    and recipes replace those of the same name, everything else is kept."""
    out = dict(previous)
    new_rows = [r for r in new["accuracy"] if r["name"] not in ("fp32", "fp16")]  # references stay
    names = {r["name"] for r in new_rows}
    out["accuracy"] = [r for r in previous.get("accuracy", []) if r["name"] not in names] + new_rows
    out["recipes"] = {**previous.get("recipes", {}), **new["recipes"]}
    for key in ("sensitivity", "latency_cpu_onnxruntime_batch1", "qdq_per_part"):
        if new.get(key):
            out[key] = new[key]
    out.setdefault("updates", []).append({"methods": sorted(new["recipes"]), "at": time.strftime("%Y-%m-%d %H:%M"),
                                          "fp32_this_run": new["accuracy"][0]})
    return out


def r50(args, work):
    import numpy as np
    import onnx
    import onnxruntime as ort
    import torch

    from maskrt.core.metadata import ModelMeta
    from maskrt.data.images import synthetic_image
    from maskrt.data.shapes import write_coco
    from maskrt.export.int8 import calibration_images, qdq_counts, quantize_proto
    from maskrt.export.onnx_export import export_model_proto
    from maskrt.inference.predictor import make_batch, model_feeds, prepare
    from maskrt.model.presets import load_model, resolve_sizes

    size = (320, 448)
    log(f"R50-FPN random weights: exporting fp32 at {size[0]}x{size[1]} ...")
    torch.manual_seed(0)
    sizes = resolve_sizes("maskrcnn_resnet50_fpn", size, None, None)
    sizes.pop("input_size")
    model = load_model("maskrcnn_resnet50_fpn", None, True, None, **sizes)
    t = time.perf_counter()
    fp32 = export_model_proto(model, input_size=size)
    export_s = time.perf_counter() - t
    meta = ModelMeta.from_props({p.key: p.value for p in fp32.metadata_props})
    calib_dir = os.path.join(work, "r50calib")
    write_coco(calib_dir, 8, 1)
    feeds = model_feeds(calibration_images(os.path.join(calib_dir, "images"), 8), meta)
    log("quantizing R50 (minmax, 8 calibration scenes) ...")
    t = time.perf_counter()
    int8 = quantize_proto(fp32, feeds)
    quant_s = time.perf_counter() - t

    # Tensor-level comparison: FPN levels and RPN head outputs as extra graph outputs of both graphs.
    wanted = [n.output[0] for n in fp32.graph.node
              if n.op_type == "Conv" and (n.name.startswith("/backbone/fpn/layer_blocks")
                                          or n.name.startswith("/rpn/head/cls_logits")
                                          or n.name.startswith("/rpn/head/bbox_pred"))]
    sessions = {}
    for key, proto in (("fp32", fp32), ("int8", int8)):
        m = onnx.ModelProto.FromString(proto.SerializeToString())
        have = {o.name for o in m.graph.output}
        for name in wanted:
            if name not in have:
                m.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
        path = os.path.join(work, f"r50_{key}_probe.onnx")
        onnx.save(m, path)
        so = ort.SessionOptions()
        so.log_severity_level = 3
        sessions[key] = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
    images = [synthetic_image(size[0], size[1], 101 + i) for i in range(4)]
    per_tensor: dict = {}
    for i, image in enumerate(images):
        b = make_batch([prepare(image, meta, f"image {i}")], meta.batch, meta.takes_image_sizes)
        feed = {k: v.numpy() for k, v in b.feeds.items()}
        outs = {k: dict(zip([o.name for o in s.get_outputs()], s.run(None, feed))) for k, s in sessions.items()}
        for name in wanted:
            a, q = outs["fp32"][name].astype(np.float64).ravel(), outs["int8"][name].astype(np.float64).ravel()
            rel = float(np.sqrt(np.mean((a - q) ** 2)) / max(np.sqrt(np.mean(a ** 2)), 1e-12))
            cos = float(a @ q / max(np.linalg.norm(a) * np.linalg.norm(q), 1e-12))
            worst = per_tensor.setdefault(name, {"relative_rms": 0.0, "cosine": 1.0})
            worst["relative_rms"] = max(worst["relative_rms"], round(rel, 4))
            worst["cosine"] = min(worst["cosine"], round(cos, 5))
    ok = all(v["relative_rms"] <= R50_TOLERANCE["relative_rms"] and v["cosine"] >= R50_TOLERANCE["cosine"]
             for v in per_tensor.values())
    log(f"R50 tensor-level verification: {'PASS' if ok else 'FAIL'}; worst relative RMS "
        f"{max(v['relative_rms'] for v in per_tensor.values()):.4f}, worst cosine "
        f"{min(v['cosine'] for v in per_tensor.values()):.5f}")
    from maskrt.check import check_model

    report = check_model(int8)
    return {
        "canvas": list(size), "weights": "random (torch.manual_seed(0))", "export_seconds": round(export_s, 1),
        "quantize_seconds": round(quant_s, 1), "calibration_images": 8,
        "int8_size_bytes": int8.ByteSize(), "fp32_size_bytes": fp32.ByteSize(),
        "verification": {"against": "fp32 ONNX, same canvases (4 generated images)", "tolerance": R50_TOLERANCE,
                         "pass": ok, "worst_per_tensor": per_tensor},
        "qdq_per_part": qdq_counts(int8),
        "maskrt_check": {"errors": len(report.errors), "warnings": len(report.warnings)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=150)
    parser.add_argument("--calibration", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=30)
    parser.add_argument("--skip-r50", action="store_true")
    parser.add_argument("--skip-shapes", action="store_true")
    parser.add_argument("--skip-sensitivity", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--methods", default="minmax,percentile,entropy",
                        help="calibration methods to measure; with --skip-sensitivity and --skip-latency the run "
                             "updates the previous JSON's rows of these methods")
    parser.add_argument("--json", default=os.path.join(os.path.dirname(__file__), "results", "int8.json"))
    args = parser.parse_args()
    import onnxruntime

    import maskrt

    start = time.perf_counter()
    out = {"benchmark": "int8", "machine": {"platform": platform.platform(), "cpus": os.cpu_count(),
                                            "note": "shared 2-core CPU, no GPU; timings are noisy"},
           "versions": {"maskrt": maskrt.__version__, "onnxruntime": onnxruntime.__version__}}
    if os.path.exists(args.json):
        with open(args.json) as f:
            previous = json.load(f)
        out.update({k: previous[k] for k in ("shapes", "r50_fpn") if k in previous})
    with tempfile.TemporaryDirectory(prefix="maskrt-int8-bench-") as work:
        if not args.skip_shapes:
            partial = args.skip_sensitivity and args.skip_latency and "shapes" in out
            result = shapes(args, work)
            out["shapes"] = merge(out["shapes"], result) if partial else result
            _write(args.json, out)
        if not args.skip_r50:
            out["r50_fpn"] = r50(args, work)
    out["seconds"] = round(time.perf_counter() - start, 1)
    _write(args.json, out)
    log(f"wrote {args.json}")
    return 0


def _write(path, data):
    from maskrt.core.fileio import write_text_atomic

    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
