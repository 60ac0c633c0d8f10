"""Write the parts of the TensorRT API surfaces that maskrt's checks read into tests/fixtures/tensorrt_api/.

    python tools/trim_tensorrt_api.py [SURFACE_DIR]      # default: ../shared/tensorrt-api next to the repository

The API-surface test reads the full surfaces when they are present and these trimmed copies otherwise (a clean
checkout has no ../shared). Kept: module functions and attributes, every enum, and the classes named in
maskrt/backends/trt/api.py, maskrt/backends/trt/plan.py or the test itself, with their base classes. The test
checks that the copies equal this trimming of the full surfaces whenever both are available; after a change
that uses another TensorRT class, run this script again.
"""

from __future__ import annotations

import json
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUT = ROOT / "tests" / "fixtures" / "tensorrt_api"
SOURCES = [ROOT / "maskrt" / "backends" / "trt" / "api.py", ROOT / "maskrt" / "backends" / "trt" / "plan.py",
           ROOT / "tests" / "test_tensorrt_api_surface.py"]
VERSIONS = ("10.16", "11.1")


def trim(surface: dict) -> dict:
    words = set()
    for path in SOURCES:
        words |= set(re.findall(r"\b[A-Za-z_][A-Za-z0-9_]*\b", path.read_text(encoding="utf-8")))
    classes = surface["classes"]
    keep = {c for c in classes if c in words}
    pending = list(keep)
    while pending:
        for base in classes[pending.pop()].get("bases", []):
            if base in classes and base not in keep:
                keep.add(base)
                pending.append(base)
    out = {k: v for k, v in surface.items() if k != "classes"}
    out["classes"] = {c: classes[c] for c in sorted(keep)}
    out["trimmed"] = "classes limited to those maskrt's TensorRT code and its API-surface test name (and their bases)"
    return out


def main() -> int:
    folder = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT.parent / "shared" / "tensorrt-api"
    OUT.mkdir(parents=True, exist_ok=True)
    for v in VERSIONS:
        with open(folder / f"tensorrt-{v}.json", encoding="utf-8") as f:
            trimmed = trim(json.load(f))
        (OUT / f"tensorrt-{v}.json").write_text(json.dumps(trimmed, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        print(f"wrote {OUT / f'tensorrt-{v}.json'} ({len(trimmed['classes'])} classes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
