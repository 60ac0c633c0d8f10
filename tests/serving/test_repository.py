"""``maskrt triton``: every config.pbtxt parses with Triton's model_config protobuf (tritonclient's copy), the
ensemble's tensors connect with matching types and shapes, and the repository's other files are there. The slow
test runs a ``--platform python`` repository on the real tritonserver against the Predictor."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
import urllib.request

import pytest

from maskrt.backends.select import RunnerSpec
from maskrt.core.errors import MaskrtError
from maskrt.serving.repository import RepositoryOptions, write_repository
from tests.backends.engine_fixtures import fake_engine, tiny_onnx
from tests.serving.helpers import ROOT, SHAPES_WEIGHTS, free_ports, scene_png, triton_missing

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason='tritonclient is not installed (pip install "maskrt[serve]")')


def _parse(path):
    from google.protobuf import text_format

    with open(path, encoding="utf-8") as f:
        return text_format.Parse(f.read(), model_config_pb2.ModelConfig())


def _configs(repo) -> dict:
    return {c.name: c for c in (_parse(p) for p in glob.glob(os.path.join(repo, "models", "*", "config.pbtxt")))}


def _check_ensemble(configs: dict, name: str) -> None:
    """Every step's inputs come from the ensemble input or an earlier step's outputs, with the same data type and
    dims; every ensemble output is produced; the step models exist and batch like the ensemble."""
    ensemble = configs[name]
    assert ensemble.platform == "ensemble"
    produced = {t.name: (t.data_type, list(t.dims)) for t in ensemble.input}
    for step in ensemble.ensemble_scheduling.step:
        model = configs[step.model_name]
        assert model.max_batch_size == ensemble.max_batch_size
        inputs = {t.name: t for t in model.input}
        outputs = {t.name: t for t in model.output}
        assert set(step.input_map) == set(inputs), step.model_name
        for key, tensor in step.input_map.items():
            assert tensor in produced, (step.model_name, tensor)
            assert produced[tensor] == (inputs[key].data_type, list(inputs[key].dims)), (step.model_name, key)
        for key, tensor in step.output_map.items():
            assert key in outputs, (step.model_name, key)
            produced[tensor] = (outputs[key].data_type, list(outputs[key].dims))
    for t in ensemble.output:
        assert produced[t.name] == (t.data_type, list(t.dims)), t.name


def _served_outputs_ok(config, k: int) -> None:
    dt = model_config_pb2.DataType
    want = {"num_detections": (dt.Value("TYPE_INT32"), [1]), "boxes": (dt.Value("TYPE_FP32"), [k, 4]),
            "scores": (dt.Value("TYPE_FP32"), [k]), "labels": (dt.Value("TYPE_INT32"), [k]),
            "masks": (dt.Value("TYPE_STRING"), [k])}
    assert {t.name: (t.data_type, list(t.dims)) for t in config.output} == want
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [("image", dt.Value("TYPE_STRING"), [1])]


def test_onnxruntime_repository(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    repo = write_repository(RunnerSpec(onnx_path), str(tmp_path / "repo"),
                            RepositoryOptions(name="det", max_batch=4, instances=2))
    configs = _configs(repo.folder)
    assert set(configs) == {"det", "det_preprocess", "det_model", "det_postprocess"} and len(repo.configs) == 4
    _check_ensemble(configs, "det")
    _served_outputs_ok(configs["det"], 100)
    core = configs["det_model"]
    assert core.platform == "onnxruntime_onnx" and core.default_model_filename == "model.onnx"
    assert os.path.isfile(tmp_path / "repo" / "models" / "det_model" / "1" / "model.onnx")
    assert core.max_batch_size == 4 and core.HasField("dynamic_batching")
    assert [(g.count, g.kind) for g in core.instance_group] == [(2, model_config_pb2.ModelInstanceGroup.KIND_CPU)]
    nd = next(t for t in core.output if t.name == "num_detections")
    assert list(nd.dims) == [1] and nd.HasField("reshape") and list(nd.reshape.shape) == []
    assert [t.name for t in core.input] == ["images"] and list(core.input[0].dims) == [3, 32, 48]
    names = json.loads(configs["det"].parameters["maskrt_class_names"].string_value)
    assert names == ["__background__", "x"]
    readme = (tmp_path / "repo" / "README.md").read_text()
    assert "docker run" in readme and "tritonserver --model-repository=/models" in readme
    assert not os.path.exists(tmp_path / "repo.partial")
    yaml = pytest.importorskip("yaml")
    docs = list(yaml.safe_load_all((tmp_path / "repo" / "kubernetes" / "det.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    hpa = docs[2]["spec"]
    assert hpa["scaleTargetRef"]["name"] == docs[0]["metadata"]["name"]
    assert {m["type"] for m in hpa["metrics"]} == {"Pods", "Resource"}


def test_tensorrt_repository_and_plugins_note(tmp_path):
    engine = fake_engine(tmp_path / "m.engine")
    repo = write_repository(RunnerSpec(engine), str(tmp_path / "repo"), RepositoryOptions(max_batch=8))
    configs = _configs(repo.folder)
    _check_ensemble(configs, "maskrt")
    core = configs["maskrt_model"]
    assert core.platform == "tensorrt_plan" and core.default_model_filename == "model.plan"
    assert core.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_GPU
    assert (tmp_path / "repo" / "models" / "maskrt_model" / "1" / "model.plan").read_bytes().startswith(b"not really")
    plugins = (tmp_path / "repo" / "plugins" / "README.md").read_text()
    assert "LD_PRELOAD" in plugins and "--backend-config=tensorrt,plugins=" in plugins
    with pytest.raises(MaskrtError, match="over the engine's profile"):
        write_repository(RunnerSpec(engine), str(tmp_path / "repo2"), RepositoryOptions(max_batch=16))


def test_python_repository_for_a_checkpoint(tmp_path):
    spec = RunnerSpec(SHAPES_WEIGHTS, arch="shapes")
    repo = write_repository(spec, str(tmp_path / "repo"), RepositoryOptions(platform="python"))
    configs = _configs(repo.folder)
    _check_ensemble(configs, "maskrt")
    core = configs["maskrt_model"]
    assert core.backend == "python" and core.parameters["maskrt_arch"].string_value == "shapes"
    assert os.path.isfile(tmp_path / "repo" / "models" / "maskrt_model" / "1" / "shapes.safetensors")
    _served_outputs_ok(configs["maskrt"], 50)


def test_refusals_are_one_line(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    fixed = tiny_onnx(tmp_path / "fixed.onnx", batch=2)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    cases = [
        (RunnerSpec(onnx_path), tmp_path / "full", RepositoryOptions(), "not an empty folder"),
        (RunnerSpec(onnx_path), tmp_path / "a", RepositoryOptions(platform="tensorrt"), "needs a TensorRT engine"),
        (RunnerSpec(fixed), tmp_path / "b", RepositoryOptions(), "--dynamic-batch"),
        (RunnerSpec(onnx_path), tmp_path / "c", RepositoryOptions(name="bad/name"), "not a usable model name"),
        (RunnerSpec(onnx_path), tmp_path / "d", RepositoryOptions(max_batch=0), "--max-batch"),
    ]
    for spec, out, options, message in cases:
        with pytest.raises(MaskrtError, match=message) as e:
            write_repository(spec, str(out), options)
        assert "\n" not in str(e.value)
        assert not os.path.exists(str(out) + ".partial")
    assert os.listdir(tmp_path / "full") == ["x"]


def test_cli_writes_a_repository(tmp_path):
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    r = subprocess.run([sys.executable, "-m", "maskrt", "triton", onnx_path, "--out", str(tmp_path / "repo"),
                        "--max-batch", "2"], capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "ensemble 'maskrt'" in r.stdout and "onnxruntime core" in r.stdout
    assert _configs(str(tmp_path / "repo"))["maskrt_model"].max_batch_size == 2


@pytest.mark.slow
def test_python_repository_runs_on_tritonserver(tmp_path):
    """The ensemble that maskrt triton writes, on the real server, gives the Predictor's detections."""
    missing = triton_missing()
    if missing:
        pytest.skip(f"no Triton server here: {missing}")
    import torch

    from maskrt.data.images import decode_image
    from maskrt.inference import Predictor
    from maskrt.serving.client import RemotePredictor
    from maskrt.serving.tritonserver import check_stub_numpy, find_tritonserver, prepare_backends, server_environment

    spec = RunnerSpec(SHAPES_WEIGHTS, arch="shapes")
    repo = write_repository(spec, str(tmp_path / "repo"), RepositoryOptions(platform="python", max_batch=4))
    # The stub imports from its working directory first: numpy<2 and this checkout's maskrt, side by side.
    cwd = tmp_path / "stubcwd"
    cwd.mkdir()
    stub = check_stub_numpy()
    for name in os.listdir(stub):
        if name.startswith("numpy"):
            os.symlink(os.path.join(stub, name), cwd / name)
    os.symlink(ROOT / "maskrt", cwd / "maskrt")
    install = find_tritonserver()
    backends = prepare_backends(install, str(tmp_path))
    http, grpc, metrics = free_ports(3)
    cmd = [install.binary, f"--model-repository={repo.folder}/models", f"--backend-directory={backends}",
           "--http-address=127.0.0.1", f"--http-port={http}", "--grpc-address=127.0.0.1", f"--grpc-port={grpc}",
           "--metrics-address=127.0.0.1", f"--metrics-port={metrics}", "--exit-timeout-secs=10"]
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(cmd, cwd=cwd, env=server_environment(install), stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/models/maskrt/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        assert proc.poll() is None, (tmp_path / "server.log").read_text()[-3000:]
        payloads = [scene_png(i) for i in range(4)]
        with RemotePredictor(f"127.0.0.1:{http}") as remote:
            served = remote.predict([decode_image(p) for p in payloads])
            with pytest.raises(MaskrtError, match="cannot read image"):
                remote.infer_bytes(b"not an image")
        with Predictor(spec.open(None), prefetch=0) as predictor:
            local = predictor.predict([decode_image(p) for p in payloads])
        for got, want in zip(served, local):
            assert len(got) == len(want) > 0
            torch.testing.assert_close(got.boxes, want.boxes, rtol=0, atol=1e-3)
            assert torch.equal(got.labels, want.labels)
            assert torch.equal(got.masks > 0.5, want.binary_masks())
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_pre_and_post_steps_load_the_models_metadata(tmp_path, monkeypatch):
    """The two python steps read the metadata written beside them (no server: Triton's utils module is stood in
    for; initialize touches nothing of it)."""
    import importlib.util
    import types

    from maskrt.serving.meta import model_meta

    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", types.ModuleType("triton_python_backend_utils"))
    onnx_path = tiny_onnx(tmp_path / "m.onnx")
    spec = RunnerSpec(onnx_path)
    repo = write_repository(spec, str(tmp_path / "repo"), RepositoryOptions(name="det"))
    want = model_meta(spec)
    for step in ("det_preprocess", "det_postprocess"):
        folder = os.path.join(repo.folder, "models", step)
        module_spec = importlib.util.spec_from_file_location(f"step_{step}", os.path.join(folder, "1", "model.py"))
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        model = module.TritonPythonModel()
        model.initialize({"model_repository": folder, "model_version": "1"})
        assert model.meta.to_props() == want.to_props(), step
