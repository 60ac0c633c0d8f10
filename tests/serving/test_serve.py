"""``maskrt serve`` for real: a Triton server on loopback ports serving the shapes model, concurrent requests with
corrupt ones among them, every answer compared with the local Predictor, metrics, ports in use, clean shutdown.

Skipped (with the reason) where the tritonserver of nvidia-pytriton or the stub's numpy<2 folder is missing;
.ci/run installs both.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from tests.serving.helpers import SHAPES_WEIGHTS, corrupt_payloads, env_with_root, free_ports, scene_png, triton_missing

MISSING = triton_missing()
pytestmark = pytest.mark.skipif(MISSING is not None, reason=f"no Triton server here: {MISSING}")

GOOD = list(range(6))  # held-out scenes (three image sizes)


def _descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.add(child)
            todo.append(child)
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _local_detections() -> dict:
    from maskrt.backends.select import RunnerSpec
    from maskrt.data.images import decode_image
    from maskrt.inference import Predictor

    with Predictor(RunnerSpec(SHAPES_WEIGHTS, arch="shapes").open(None), prefetch=0) as p:
        return {i: p.predict([decode_image(scene_png(i))])[0] for i in GOOD}


@pytest.fixture(scope="module")
def server():
    http, grpc, metrics = free_ports(3)
    cmd = [sys.executable, "-m", "maskrt", "serve", SHAPES_WEIGHTS, "--arch", "shapes", "--name", "shapes",
           "--http-port", str(http), "--grpc-port", str(grpc), "--metrics-port", str(metrics), "--max-batch", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env_with_root())
    local = _local_detections()  # the reference, computed while the server starts
    ready = proc.stdout.readline()  # the one line it prints when ready (or nothing when it fails)
    if not ready.startswith("ready:"):
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"maskrt serve did not start: {ready}{out}{err}")
    info = {"proc": proc, "http": http, "grpc": grpc, "metrics": metrics, "ready": ready, "local": local,
            "children": _descendants(proc.pid)}
    yield info
    if proc.poll() is None:
        proc.kill()
        proc.communicate()


def _infer(url: str, payload: bytes):
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url, network_timeout=300)
    try:
        item = httpclient.InferInput("image", [1, 1], "BYTES")
        item.set_data_from_numpy(np.array([[payload]], dtype=object))
        result = client.infer("shapes", [item])
        return {n: result.as_numpy(n) for n in ("num_detections", "boxes", "scores", "labels", "masks")}
    except httpclient.InferenceServerException as e:
        return e
    finally:
        client.close()


def test_serves_concurrent_requests_like_the_local_predictor(server):
    from maskrt.serving.contract import detections_from_arrays

    assert "model 'shapes'" in server["ready"] and f"127.0.0.1:{server['http']}" in server["ready"]
    assert len(server["children"]) >= 2  # tritonserver, its python stub, the maskrt worker
    corrupt = corrupt_payloads()
    jobs = [("good", i, scene_png(i)) for i in GOOD]
    bad = [("bad", name, payload) for name, payload in corrupt.items()]
    for k, job in enumerate(bad):  # interleaved among the good requests
        jobs.insert(1 + 2 * k, job)
    url = f"127.0.0.1:{server['http']}"
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: _infer(url, job[2]), jobs))
    assert len(answers) == len(jobs)
    names = ["__background__", "circle", "rectangle", "triangle", "star"]
    for (kind, key, _), answer in zip(jobs, answers):
        if kind == "bad":
            assert isinstance(answer, Exception), key
            assert "cannot read image" in str(answer), (key, str(answer))
            continue
        assert isinstance(answer, dict), (key, answer)
        det = server["local"][key]
        n = int(answer["num_detections"][0, 0])
        assert n == len(det) > 0
        assert not answer["boxes"][0, n:].any() and not answer["scores"][0, n:].any()
        assert all(m == b"" for m in answer["masks"][0, n:])
        got = detections_from_arrays(answer, det.image_size, names, row=0)
        torch.testing.assert_close(got.boxes, det.boxes, rtol=0, atol=1e-3)
        torch.testing.assert_close(got.scores, det.scores, rtol=0, atol=1e-5)
        assert torch.equal(got.labels, det.labels)
        expected = det.binary_masks()
        for a, b in zip(got.masks > 0.5, expected):
            union = (a | b).sum().item()
            assert union == 0 or (a & b).sum().item() / union >= 0.99
    with urllib.request.urlopen(f"http://{url}/v2/health/ready", timeout=10) as r:
        assert r.status == 200  # still healthy after the corrupt requests


def _metrics(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    totals: dict = {}
    for line in text.splitlines():
        if line.startswith("nv_inference_") and 'model="shapes"' in line:
            name = line.split("{")[0]
            totals[name] = totals.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
    return totals


def test_metrics_count_the_requests(server):
    before = _metrics(server["metrics"])
    url = f"127.0.0.1:{server['http']}"
    assert isinstance(_infer(url, scene_png(0)), dict)
    assert isinstance(_infer(url, b"corrupt"), Exception)
    after = _metrics(server["metrics"])

    def grew(name):
        return after.get(name, 0.0) - before.get(name, 0.0)

    # Both requests reached the model and were counted (Triton's python backend counts a request answered with an
    # error as a success, so the sum is what is certain), each in one model execution.
    assert grew("nv_inference_request_success") + grew("nv_inference_request_failure") == 2
    assert grew("nv_inference_count") == 2 and grew("nv_inference_exec_count") == 2
    assert grew("nv_inference_request_duration_us") > 0


def test_predict_url_writes_what_a_local_predict_writes(server, tmp_path):
    from pycocotools import mask as mask_utils

    from maskrt.data.coco import coco_results

    paths = []
    for i in (0, 2):
        paths.append(tmp_path / f"scene{i}.png")
        paths[-1].write_bytes(scene_png(i))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "maskrt", "predict", "--url", f"127.0.0.1:{server['http']}", "--model-name", "shapes",
           *map(str, paths), str(bad), "--out", str(out)]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env_with_root(), timeout=300)
    assert r.returncode == 2 and "1 of 3 image(s) could not be read" in r.stderr and "Traceback" not in r.stderr
    got = json.loads((out / "predictions.json").read_text())
    expected = []
    for image_id, (i, path) in enumerate(zip((0, 2), paths)):
        det = server["local"][i]
        expected += coco_results(det.select(det.scores >= 0.5), image_id, file_name=str(path))  # --score-threshold
    assert len(got) == len(expected) > 0
    for a, b in zip(got, expected):
        assert (a["image_id"], a["category_id"], a["file_name"]) == (b["image_id"], b["category_id"], b["file_name"])
        assert a["bbox"] == pytest.approx(b["bbox"], abs=1e-2) and a["score"] == pytest.approx(b["score"], abs=1e-5)
        rle = [dict(x["segmentation"], counts=x["segmentation"]["counts"].encode()) for x in (a, b)]
        assert mask_utils.iou([rle[0]], [rle[1]], [False])[0][0] >= 0.99
    assert os.path.isfile(out / "scene0.png") and os.path.isfile(out / "summary.json")


def test_a_port_in_use_is_one_line_before_anything_starts(server):
    cmd = [sys.executable, "-m", "maskrt", "serve", SHAPES_WEIGHTS, "--arch", "shapes",
           "--http-port", str(server["http"]), *("--grpc-port", "1"), "--metrics-port", str(free_ports(1)[0])]
    start = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env_with_root(), timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and f"port {server['http']} (--http-port) is in use" in r.stderr
    assert time.monotonic() - start < 60 and r.stdout == ""


def test_sigint_stops_everything_it_started(server):
    proc = server["proc"]
    children = server["children"]
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err[-2000:]
    assert err.strip().splitlines()[-1] == "stopped" and "Traceback" not in err
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]
    from maskrt.serving.server import check_ports

    check_ports("127.0.0.1", {"http": server["http"], "grpc": server["grpc"], "metrics": server["metrics"]})
