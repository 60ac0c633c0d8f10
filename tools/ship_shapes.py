"""Ship a `maskrt train` run as the embedded shapes weights, with its record.

    python tools/ship_shapes.py RUN_DIR [--images 300] [--seed 1000]

Reads RUN_DIR/model.safetensors and RUN_DIR/train.json, stores the weights in fp16 (batch-norm statistics stay
fp32) as maskrt/model/weights/shapes.safetensors, evaluates exactly those weights (PyTorch, CPU) on a held-out set
of generated scenes (seed 1000; training used data seed 1) and writes maskrt/model/weights/shapes.json: the
training command, seeds, dataset size, iterations, final losses, loss history, the validation metrics and the
file's sha256.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

import torch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEIGHTS_DIR = os.path.join(REPO, "maskrt", "model", "weights")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1000)
    args = parser.parse_args()

    from safetensors.torch import load_file

    from maskrt.backends.select import RunnerSpec
    from maskrt.core.environment import file_sha256
    from maskrt.core.fileio import write_text_atomic
    from maskrt.data.shapes import write_coco
    from maskrt.evaluation.coco import evaluate, load_coco
    from maskrt.model import build
    from maskrt.train.loop import save_safetensors

    with open(os.path.join(args.run_dir, "train.json")) as f:
        train = json.load(f)
    if args.seed == train["config"]["data_seed"]:
        sys.exit("the validation seed must differ from the training data seed")
    state = load_file(os.path.join(args.run_dir, "model.safetensors"))
    shipped = {k: (v if "running_" in k or v.dtype != torch.float32 else v.half()) for k, v in state.items()}
    build("shapes").load_state_dict(shipped)  # strict: the run matches the registered preset
    os.makedirs(WEIGHTS_DIR, exist_ok=True)
    weights = os.path.join(WEIGHTS_DIR, "shapes.safetensors")
    save_safetensors(shipped, weights, {"arch": "shapes", "storage": "fp16 weights, fp32 batch-norm statistics"})

    with tempfile.TemporaryDirectory() as tmp:
        ann = write_coco(tmp, args.images, args.seed)
        dataset = load_coco(ann, os.path.join(tmp, "images"))
        t0 = time.perf_counter()
        result = evaluate(RunnerSpec(weights, backend="torch", arch="shapes"), dataset)
        seconds = time.perf_counter() - t0
    history = train["history"]
    record = {
        "arch": "shapes",
        "file": "shapes.safetensors",
        "sha256": file_sha256(weights),
        "size_bytes": os.path.getsize(weights),
        "parameters": sum(v.numel() for k, v in state.items() if "running_" not in k),
        "storage": "fp16 weights, fp32 batch-norm running statistics (fp32 models upcast them on load)",
        "training": {
            "command": " ".join(train["config"]["command"]),
            "seed": train["config"]["seed"],
            "data": f"maskrt.data.shapes.make_scene(seed={train['config']['data_seed']}, index) for index < "
                    f"{train['config']['dataset_size']}",
            "dataset_size": train["config"]["dataset_size"],
            "iterations": train["iterations"],
            "batch_size": train["config"]["batch_size"],
            "images_seen": train["images_seen"],
            "optimizer": f"AdamW lr {train['config']['lr']} (warm-up {train['config']['warmup']}, cosine), "
                         f"weight decay {train['config']['weight_decay']}, gradient norm clip {train['config']['clip_norm']}",
            "final_losses": train["final_losses"],
            "loss_history": [h for h in history if h["iteration"] % 250 == 0 or h is history[-1]],
            "torch": train["torch"],
            "machine": "2 CPU cores",
        },
        "validation": {
            "data": f"maskrt.data.shapes, seed {args.seed}, {args.images} images (held out: not the training seed)",
            "backend": "torch (CPU), the shipped weights",
            "bbox": result.metrics["bbox"],
            "segm": result.metrics["segm"],
            "num_detections": result.num_detections,
            "seconds": round(seconds, 1),
            "goal": "bbox AP >= 0.70 and segm AP >= 0.70",
            "reached": bool(result.metrics["bbox"]["AP"] >= 0.70 and result.metrics["segm"]["AP"] >= 0.70),
        },
        "ship_command": "python tools/ship_shapes.py " + " ".join(sys.argv[1:]),
    }
    write_text_atomic(os.path.join(WEIGHTS_DIR, "shapes.json"), json.dumps(record, indent=2) + "\n")
    print(json.dumps(record["validation"], indent=2))
    print(f"shipped {weights} ({record['size_bytes'] / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
