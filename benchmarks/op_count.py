"""Operators per deploy forward, counted on the CPU: what a GPU would be asked to launch, and the data-dependent
operators that would make the host wait for it.

    python benchmarks/op_count.py [--baseline-repo /path/to/older/checkout] [--json benchmarks/results/op_count.json]

For each case (R50-FPN at 800x1344 batch 1 with seeded random weights; the shapes preset at 384x384 batch 1 with
its trained weights) the deploy forward runs once under :class:`maskrt.profiling.opcount.OpCounter` (torch.no_grad,
so composite operators are counted as the kernels-level operators they dispatch to), once warm: the first forward
at a canvas size also builds the anchor table kept for it, counted apart. Figures: operators outside
maskrt's custom ops (all, and without views, which launch no kernel), data-dependent operators outside them, and
the same inside the custom ops' CPU implementations (on CUDA their kernels run instead). "after" runs the forward
as the torch runner does on CUDA (BatchNorm folded) and as it does on the CPU (not folded).

``--baseline-repo`` counts another checkout of maskrt (its code, this counter) for the "before" figures.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
COUNTER = os.path.join(ROOT, "maskrt", "profiling", "opcount.py")
CASES = [("maskrcnn_resnet50_fpn", 800, 1344, 1), ("shapes", 384, 384, 1)]

CHILD = r"""
import importlib.util, inspect, json, sys, torch
spec = importlib.util.spec_from_file_location("maskrt_opcount", sys.argv[1])
opcount = importlib.util.module_from_spec(spec); sys.modules["maskrt_opcount"] = opcount; spec.loader.exec_module(opcount)
from maskrt.model import DeployMaskRCNN
from maskrt.model.presets import load_model
name, h, w, b, fold = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), sys.argv[6] == "1"
model = load_model(name, random_weights=(name != "shapes"), seed=0)
kwargs = {"fold_batchnorm": True} if fold else {}
if fold and "fold_batchnorm" not in inspect.signature(DeployMaskRCNN.__init__).parameters:
    print(json.dumps({"status": "this checkout has no BatchNorm folding"})); sys.exit(0)
deploy = DeployMaskRCNN(model, **kwargs).eval()
g = torch.Generator().manual_seed(0)
images = torch.randint(0, 256, (b, 3, h, w), dtype=torch.uint8, generator=g)
sizes = torch.tensor([[h, w]] * b, dtype=torch.int32)
# Counted warm: the first forward at a canvas size also builds what later ones reuse (the anchor table).
first_out, first = opcount.count_ops(deploy, images, sizes)
out, counts = opcount.count_ops(deploy, images, sizes)
summary = counts.summary()
summary["num_detections"] = out[0].tolist()
summary["first_forward_ops_outside_custom_ops"] = first.total_outside
summary["first_forward_same_outputs"] = all(torch.equal(a, b) for a, b in zip(first_out, out))
print(json.dumps(summary))
"""


def measure(repo: str, name: str, h: int, w: int, b: int, fold: bool) -> dict:
    env = dict(os.environ, PYTHONPATH=repo)
    proc = subprocess.run([sys.executable, "-c", CHILD, COUNTER, name, str(h), str(w), str(b), "1" if fold else "0"],
                          capture_output=True, text=True, env=env, cwd=repo)
    if proc.returncode != 0:
        return {"status": "failed: " + (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def git_head(repo: str) -> str:
    try:
        return subprocess.run(["git", "-C", repo, "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--baseline-repo", default=None)
    ap.add_argument("--baseline-label", default=None, help="what the baseline is (default: its git HEAD)")
    ap.add_argument("--json", default=os.path.join(HERE, "results", "op_count.json"))
    args = ap.parse_args(argv)
    from maskrt.core.environment import cpu_model

    result = {"benchmark": "op_count", "machine": cpu_model(), "counter": "maskrt.profiling.opcount.OpCounter",
              "goal": "<= 700 operators outside custom ops, 0 data-dependent (R50-FPN 800x1344 batch 1)",
              "cases": []}
    for name, h, w, b in CASES:
        case = {"model": name, "canvas": [h, w], "batch": b}
        if args.baseline_repo:
            case["before"] = {"commit": args.baseline_label or git_head(args.baseline_repo),
                              "unfolded": measure(args.baseline_repo, name, h, w, b, False)}
        case["after"] = {"commit": git_head(ROOT), "unfolded_cpu_runner": measure(ROOT, name, h, w, b, False),
                         "batchnorm_folded_cuda_runner": measure(ROOT, name, h, w, b, True)}
        result["cases"].append(case)
        print(json.dumps(case)[:600])
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    tmp = args.json + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1)
    os.replace(tmp, args.json)
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
