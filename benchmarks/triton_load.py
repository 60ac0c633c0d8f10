#!/usr/bin/env python
"""Load on a real Triton server (``maskrt serve``) against the in-process Predictor, on this machine.

    nice -n 10 python benchmarks/triton_load.py [--requests N] [--total N] [--json OUT]

The shapes model, exported to ONNX with a dynamic batch (ONNX Runtime on the CPU here), served by the tritonserver
of nvidia-pytriton with dynamic batching up to 8 (:class:`maskrt.serving.server.TritonServer`). Held-out shapes
scenes are sent as PNG bytes with tritonclient (HTTP) from 1, 4, 8 and 16 threads (one client each); every 8th
request is a corrupt payload. For each concurrency:

- throughput (good images per second over the level's wall time) and p50 / p90 / p99 latency of good requests;
- ``lost``: requests without an answer (neither detections nor the server's refusal), ``duplicated``: answers
  whose request id was answered before, ``mismatched``: answers that are not the detections of the image sent
  (checked against the in-process Predictor's, so a swapped answer counts) or a corrupt payload that was not
  refused. All three must be 0.

Then the same images through the in-process :class:`~maskrt.inference.Predictor` (decoding included, batch 1
and batch 8) for the throughput ratio, and the server's resident memory (tritonserver + python stub + maskrt
worker, from /proc) after start-up and warm-up and again once ``--total`` requests (1000 by default, the load
levels included) have been served, with readings after each level and every 100 requests between; the
stated bound is growth of at most 20 % or 150 MiB, whichever is larger.
Figures are this machine's: its CPU, its core count and the load average at the start are recorded beside them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

DEFAULT_JSON = REPO / "benchmarks" / "results" / "triton_load.json"
CONCURRENCY = (1, 4, 8, 16)
CORRUPT_EVERY = 8
RSS_BOUND = (0.20, 150.0)  # fraction, MiB


def _png(index: int) -> bytes:
    from PIL import Image

    from maskrt.data.shapes import make_scene

    buffer = io.BytesIO()
    Image.fromarray(make_scene(1000, index).image).save(buffer, format="PNG")
    return buffer.getvalue()


def _percentile(values, q):
    ordered = sorted(values)
    if not ordered:
        return None
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def _rss_mib(pids) -> dict:
    out = {}
    for pid in pids:
        try:
            with open(f"/proc/{pid}/status") as f:
                fields = dict(line.split(":", 1) for line in f if ":" in line)
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().split(b"\0")
            name = ("worker" if b"maskrt.serving.worker" in cmd else
                    "stub" if cmd and cmd[0].endswith(b"triton_python_backend_stub") else
                    "tritonserver" if cmd and cmd[0].endswith(b"tritonserver") else os.path.basename(cmd[0].decode()))
            out[name] = round(int(fields["VmRSS"].split()[0]) / 1024, 1)
        except (OSError, KeyError, ValueError):
            continue
    return out


def _descendants(pid: int) -> list[int]:
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class Load:
    """Requests from ``concurrency`` threads, each with its own tritonclient, every answer checked."""

    def __init__(self, url: str, model: str, images: list, reference: dict):
        self.url, self.model, self.images, self.reference = url, model, images, reference
        self.sent = 0
        self._lock = threading.Lock()

    def run(self, concurrency: int, count: int) -> dict:
        import numpy as np
        import tritonclient.http as httpclient

        with self._lock:
            first = self.sent
            self.sent += count
        jobs = []
        for k in range(count):
            n = first + k
            if n % CORRUPT_EVERY == CORRUPT_EVERY - 1:
                jobs.append((f"r{n}", None, b"corrupt payload %d" % n))
            else:
                index = n % len(self.images)
                jobs.append((f"r{n}", index, self.images[index]))
        clients = threading.local()
        opened: list = []
        answers: dict = {}
        duplicated = 0

        def one(job):
            nonlocal duplicated
            rid, index, payload = job
            if not hasattr(clients, "c"):
                clients.c = httpclient.InferenceServerClient(self.url, network_timeout=600)
                with self._lock:
                    opened.append(clients.c)
            item = httpclient.InferInput("image", [1, 1], "BYTES")
            item.set_data_from_numpy(np.array([[payload]], dtype=object))
            start = time.perf_counter()
            try:
                result = clients.c.infer(self.model, [item], request_id=rid)
                got_id = result.get_response().get("id", rid)
                outcome = ("ok", (int(result.as_numpy("num_detections")[0, 0]), result.as_numpy("boxes")[0],
                                  result.as_numpy("labels")[0]))
            except httpclient.InferenceServerException as e:
                got_id, outcome = rid, ("refused", str(e))
            except Exception as e:  # no answer at all
                got_id, outcome = rid, ("lost", repr(e))
            elapsed = time.perf_counter() - start
            with self._lock:
                if got_id in answers:
                    duplicated += 1
                answers[got_id] = (outcome, elapsed)

        start = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            list(pool.map(one, jobs))
        wall = time.perf_counter() - start
        for client in opened:
            client.close()
        lost = mismatched = 0
        latencies = []
        for rid, index, _ in jobs:
            if rid not in answers or answers[rid][0][0] == "lost":
                lost += 1
                continue
            (kind, value), elapsed = answers[rid]
            if index is None:
                mismatched += kind != "refused" or "cannot read image" not in value
                continue
            if kind != "ok":
                mismatched += 1
                continue
            n, boxes, labels = value
            ref_n, ref_boxes, ref_labels = self.reference[index]
            same = n == ref_n and (labels[:n] == ref_labels).all() and abs(boxes[:n] - ref_boxes).max(initial=0) < 1e-2
            mismatched += not same
            latencies.append(elapsed)
        good = sum(1 for _, index, _ in jobs if index is not None)
        return {"concurrency": concurrency, "requests": count, "good_images": good, "corrupt": count - good,
                "seconds": round(wall, 3), "throughput_img_s": round(good / wall, 3),
                "latency_ms": {q: round(1000 * _percentile(latencies, v), 1) if latencies else None
                               for q, v in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))},
                "lost": lost, "duplicated": duplicated, "mismatched": mismatched}


def _merge(rows: list) -> dict:
    """One row for several runs at the same concurrency (latency percentiles are not merged: the worst is kept)."""
    seconds = sum(r["seconds"] for r in rows)
    good = sum(r["good_images"] for r in rows)
    return {"concurrency": rows[0]["concurrency"], "requests": sum(r["requests"] for r in rows), "good_images": good,
            "corrupt": sum(r["corrupt"] for r in rows), "seconds": round(seconds, 3),
            "throughput_img_s": round(good / seconds, 3),
            "latency_ms_worst_chunk": {q: max(r["latency_ms"][q] or 0 for r in rows) for q in ("p50", "p90", "p99")},
            "lost": sum(r["lost"] for r in rows), "duplicated": sum(r["duplicated"] for r in rows),
            "mismatched": sum(r["mismatched"] for r in rows), "chunks": len(rows)}


def predictor_throughput(model_path: str, images: list, batch: int, count: int) -> dict:
    from maskrt.backends.select import RunnerSpec
    from maskrt.data.images import decode_image
    from maskrt.inference import Predictor

    with Predictor(RunnerSpec(model_path).open(None), batch=batch, prefetch=0) as p:
        p.predict([decode_image(images[0])] * batch)  # warm-up
        start = time.perf_counter()
        done = sum(1 for _ in p.predict_iter(decode_image(images[i % len(images)]) for i in range(count)))
        wall = time.perf_counter() - start
    return {"batch": batch, "images": done, "seconds": round(wall, 3), "throughput_img_s": round(done / wall, 3)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=0, help="requests per concurrency level (default 8 x "
                        "concurrency, at least 24)")
    parser.add_argument("--total", type=int, default=1000, help="requests served before the second RSS reading")
    parser.add_argument("--images", type=int, default=16, help="distinct held-out scenes")
    parser.add_argument("--json", default=str(DEFAULT_JSON))
    args = parser.parse_args(argv)

    from maskrt.backends.select import RunnerSpec
    from maskrt.core.environment import cpu_model, usable_cores
    from maskrt.data.images import decode_image
    from maskrt.inference import Predictor
    from maskrt.serving.server import ServeOptions, TritonServer

    load_start = os.getloadavg()
    images = [_png(i) for i in range(args.images)]
    work = tempfile.mkdtemp(prefix="maskrt-triton-load-")
    onnx_path = os.path.join(work, "shapes_dynamic_batch.onnx")
    import subprocess

    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "maskrt", "export", "--arch", "shapes", "--dynamic-batch", "-o", onnx_path],
                   check=True, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    print(f"exported {onnx_path} in {time.perf_counter() - t:.0f} s", flush=True)
    with Predictor(RunnerSpec(onnx_path).open(None), batch=1, prefetch=0) as p:
        reference = {}
        for i, payload in enumerate(images):
            det = p.predict([decode_image(payload)])[0]
            reference[i] = (len(det), det.boxes.numpy(), det.labels.numpy().astype("int32"))

    from tests.serving.helpers import free_ports  # the same helper the tests use

    http, grpc, metrics = free_ports(3)
    options = ServeOptions(name="shapes", http_port=http, grpc_port=grpc, metrics_port=metrics, max_batch=8)
    server = TritonServer(RunnerSpec(onnx_path), options)
    t = time.perf_counter()
    server.start()
    startup = time.perf_counter() - t
    print(server.ready_line(), f"({startup:.0f} s)", flush=True)
    try:
        pids = _descendants(server.pid) + [server.pid]
        load = Load(server.http_url, "shapes", images, reference)
        load.run(16, 48)  # warm-up, full batches included (the runtime's memory grows to the largest batch first)
        warm = load.sent
        rss_before = _rss_mib(pids)
        trajectory = [{"requests": load.sent, "total_mib": round(sum(rss_before.values()), 1)}]
        levels = []
        for c in CONCURRENCY:
            row = load.run(c, args.requests or max(24, 8 * c))
            levels.append(row)
            trajectory.append({"requests": load.sent, "total_mib": round(sum(_rss_mib(pids).values()), 1)})
            print(json.dumps(row), flush=True)
        soak_rows = []
        while load.sent < args.total:  # the rest at concurrency 8, in chunks, memory read after each
            soak_rows.append(load.run(8, min(100, args.total - load.sent)))
            trajectory.append({"requests": load.sent, "total_mib": round(sum(_rss_mib(pids).values()), 1)})
            print(json.dumps(trajectory[-1]), flush=True)
        soak = _merge(soak_rows) if soak_rows else None
        rss_after = _rss_mib(pids)
        total_sent = load.sent
    finally:
        code = server.stop()

    local = [predictor_throughput(onnx_path, images, b, 48) for b in (1, 8)]
    print(json.dumps(local), flush=True)
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    best = max(levels, key=lambda r: r["throughput_img_s"])
    before, after = sum(rss_before.values()), sum(rss_after.values())
    bound = max(before * RSS_BOUND[0], RSS_BOUND[1])
    result = {
        "schema": "maskrt.triton_load", "schema_version": 1,
        "machine": {"cpu": cpu_model(), "cores": usable_cores(), "gpu": None, "platform": platform.platform(),
                    "load_average_at_start": [round(v, 2) for v in load_start],
                    "load_average_at_end": [round(v, 2) for v in os.getloadavg()]},
        "model": {"preset": "shapes", "file": "ONNX export, dynamic batch", "backend": "onnxruntime (CPU)"},
        "server": {"tritonserver": "nvidia-pytriton", "max_batch": options.max_batch,
                   "max_queue_delay_us": options.max_queue_delay_us, "startup_seconds": round(startup, 1),
                   "exit_status": code},
        "corrupt_every": CORRUPT_EVERY,
        "levels": levels,
        "soak": soak,
        "in_process_predictor": local,
        "throughput_ratio_best_served_vs_predictor": {
            f"batch_{r['batch']}": round(best["throughput_img_s"] / r["throughput_img_s"], 3) for r in local},
        "rss_mib": {"before": rss_before, "after": rss_after, "total_before": round(before, 1),
                    "total_after": round(after, 1), "requests_between": total_sent - warm, "warm_up_requests": warm,
                    "trajectory": trajectory,
                    "growth": round(after - before, 1), "bound": round(bound, 1),
                    "within_bound": after - before <= bound},
        "all_answers_accounted": all(r["lost"] == 0 and r["duplicated"] == 0 and r["mismatched"] == 0
                                     for r in levels + ([soak] if soak else [])),
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
    with open(args.json, "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"wrote {args.json}")
    return 0 if result["all_answers_accounted"] and result["rss_mib"]["within_bound"] else 1


if __name__ == "__main__":
    sys.exit(main())
