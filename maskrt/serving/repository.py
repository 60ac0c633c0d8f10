"""``maskrt triton``: a model repository for stock Triton Inference Servers (NVIDIA's container, Kubernetes).

Layout written into ``out`` (``NAME`` is ``--name``); ``models/`` is what ``tritonserver --model-repository``
takes (the server reads every folder there as a model, so nothing else lives in it)::

    README.md             the docker run line, the contract, the client
    models/NAME/          ensemble: image -> NAME_preprocess -> NAME_model -> NAME_postprocess -> outputs
    models/NAME_preprocess/   python backend: encoded image bytes -> canvas, image_sizes, original_sizes
    models/NAME_model/        the core model: tensorrt_plan (model.plan), onnxruntime_onnx (model.onnx), or python
                              (a maskrt runner on the model file)
    models/NAME_postprocess/  python backend: boxes in original pixels, scores, labels, RLE masks
    plugins/              TensorRT target: the maskrt plugin library the engine needs, and how the server loads it
    kubernetes/NAME.yaml  Deployment, Service, HorizontalPodAutoscaler (on Triton's queue-time metric)

The ensemble's input and outputs are those of ``maskrt serve`` (:mod:`maskrt.serving.contract`), so the same
clients work against both. Dynamic batching and instance groups come from ``--max-batch`` and ``--instances``.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from typing import Optional

from maskrt.core.errors import MaskrtError
from maskrt.serving.config import ModelConfig, Step, Tensor, check_model_name
from maskrt.serving.contract import INPUT_NAME, OUTPUT_NAMES, output_specs
from maskrt.serving.steps import STEP_META

PLATFORMS = ("tensorrt", "onnxruntime", "python")
TRITON_IMAGE = "nvcr.io/nvidia/tritonserver:24.10-py3"  # Triton 2.51, the server nvidia-pytriton 0.7.0 ships


@dataclass
class RepositoryOptions:
    name: str = "maskrt"
    platform: Optional[str] = None  # default: tensorrt for engines, onnxruntime for exports, python for checkpoints
    max_batch: int = 8
    instances: int = 1
    max_queue_delay_us: int = 2000
    gpu: Optional[bool] = None  # instance kind; default: GPU for tensorrt, CPU otherwise
    plugin_library: Optional[str] = None
    replicas: int = 1
    max_replicas: int = 4


@dataclass
class Repository:
    """What :func:`write_repository` wrote."""

    folder: str
    name: str
    platform: str
    configs: list = field(default_factory=list)  # paths of every config.pbtxt
    notes: list = field(default_factory=list)


def default_platform(kind: str) -> str:
    return {"engine": "tensorrt", "onnx": "onnxruntime"}.get(kind, "python")


def _deploy_tensors(meta, max_batch_dims: bool = True) -> tuple[list, list]:
    """The core model's inputs and outputs (the deploy contract) per batch item."""
    k, m = meta.max_detections, meta.mask_size
    size = [-1, -1] if meta.dynamic_size else list(meta.input_size)
    inputs = [Tensor("images", "TYPE_UINT8", [3, *size])]
    if meta.takes_image_sizes:
        inputs.append(Tensor("image_sizes", "TYPE_INT32", [2]))
    outputs = [Tensor("num_detections", "TYPE_INT32", [1], reshape=[]), Tensor("boxes", "TYPE_FP32", [k, 4]),
               Tensor("scores", "TYPE_FP32", [k]), Tensor("labels", "TYPE_INT32", [k]),
               Tensor("masks", "TYPE_FP32", [k, m, m])]
    return inputs, outputs


def _check(options: RepositoryOptions, platform: str, kind: str, meta) -> list[str]:
    check_model_name(options.name)
    notes = []
    if platform not in PLATFORMS:
        raise MaskrtError(f"--platform must be one of {', '.join(PLATFORMS)}, got {platform!r}")
    if platform == "tensorrt" and kind != "engine":
        raise MaskrtError("--platform tensorrt needs a TensorRT engine (`maskrt build`); for an .onnx export use "
                          "--platform onnxruntime, or build the engine on the serving GPU first")
    if platform == "onnxruntime" and kind != "onnx":
        raise MaskrtError(f"--platform onnxruntime needs an .onnx export; this model is a {kind}")
    if not 1 <= options.max_batch <= 1024:
        raise MaskrtError(f"--max-batch must be in [1, 1024], got {options.max_batch}")
    if not 1 <= options.instances <= 64:
        raise MaskrtError(f"--instances must be in [1, 64], got {options.instances}")
    if platform in ("tensorrt", "onnxruntime") and meta.batch is not None:
        if meta.batch != 1:
            raise MaskrtError(f"the model takes batch {meta.batch} only; Triton's batcher sends any batch up to "
                              "--max-batch: re-export with --dynamic-batch")
        if options.max_batch != 1:
            notes.append("the model takes batch 1 only (no --dynamic-batch): max_batch_size is 1")
            options.max_batch = 1
    if platform in ("tensorrt", "onnxruntime") and meta.target == "tensorrt" and platform == "onnxruntime":
        raise MaskrtError("this export holds maskrt TensorRT plugin nodes, which ONNX Runtime's Triton backend cannot "
                          "run: export with --target portable, or build an engine for --platform tensorrt")
    return notes


def _engine_max_batch(model_path: str) -> Optional[int]:
    from maskrt.backends.trt.sidecar import read_sidecar

    sidecar = read_sidecar(model_path) or {}
    for entry in sidecar.get("inputs", []):
        if entry.get("name") == "images" and entry.get("max"):
            return int(entry["max"][0])
    return None


def write_repository(spec, out: str, options: RepositoryOptions) -> Repository:
    """Write the repository for ``spec``'s model (a :class:`~maskrt.backends.select.RunnerSpec`) into ``out``
    (an empty or new folder); MaskrtError (one line) for what cannot be served as asked."""
    from maskrt.serving.meta import model_meta

    kind = spec.kind
    platform = options.platform or default_platform(kind)
    meta = model_meta(spec)
    notes = _check(options, platform, kind, meta)
    if kind == "engine":
        top = _engine_max_batch(spec.model_path)
        if top is not None and options.max_batch > top:
            raise MaskrtError(f"--max-batch {options.max_batch} is over the engine's profile (batch up to {top}): "
                              f"pass --max-batch {top} or rebuild with `maskrt build --max-batch {options.max_batch}`")
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)):
        raise MaskrtError(f"--out {out} exists and is not an empty folder; give a new one")
    gpu = options.gpu if options.gpu is not None else platform == "tensorrt"
    kind_name = "KIND_GPU" if gpu else "KIND_CPU"
    name = options.name
    names = {"pre": f"{name}_preprocess", "core": f"{name}_model", "post": f"{name}_postprocess"}
    repo = Repository(out, name, platform, notes=notes)
    staging = out.rstrip(os.sep) + ".partial"
    if os.path.exists(staging):
        shutil.rmtree(staging)
    try:
        _write_all(spec, staging, options, meta, platform, names, kind_name, repo)
        if os.path.isdir(out):
            os.rmdir(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    repo.configs = [os.path.join(out, os.path.relpath(p, staging)) for p in repo.configs]
    return repo


def _write_config(folder: str, config: ModelConfig, repo: Repository) -> None:
    os.makedirs(os.path.join(folder, config.name, "1"), exist_ok=True)
    path = os.path.join(folder, config.name, "config.pbtxt")
    with open(path, "w", encoding="utf-8") as f:
        f.write(config.to_text())
    repo.configs.append(path)


def _copy_model_py(folder: str, model: str, template: str) -> str:
    from maskrt.serving import backend_models

    version = os.path.join(folder, model, "1")
    os.makedirs(version, exist_ok=True)
    shutil.copyfile(os.path.join(os.path.dirname(backend_models.__file__), template), os.path.join(version, "model.py"))
    return version


def _write_all(spec, root, options, meta, platform, names, kind_name, repo) -> None:
    folder = os.path.join(root, "models")
    os.makedirs(folder)
    b = options.max_batch
    deploy_in, deploy_out = _deploy_tensors(meta)
    size = [-1, -1] if meta.dynamic_size else list(meta.input_size)
    props = json.dumps(meta.to_props(), indent=1)
    common = dict(max_batch_size=b, dynamic_batching=True, max_queue_delay_us=options.max_queue_delay_us)

    pre = ModelConfig(names["pre"], inputs=[Tensor(INPUT_NAME, "TYPE_STRING", [1])],
                      outputs=[Tensor("images", "TYPE_UINT8", [3, *size]), Tensor("image_sizes", "TYPE_INT32", [2]),
                               Tensor("original_sizes", "TYPE_INT32", [2])],
                      backend="python", instances=options.instances, kind="KIND_CPU", **common)
    _write_config(folder, pre, repo)
    with open(os.path.join(_copy_model_py(folder, names["pre"], "preprocess.py"), STEP_META), "w") as f:
        f.write(props)

    core_kw = dict(inputs=deploy_in, outputs=deploy_out, instances=options.instances, kind=kind_name, **common)
    version = os.path.join(folder, names["core"], "1")
    if platform == "tensorrt":
        core = ModelConfig(names["core"], platform="tensorrt_plan", default_model_filename="model.plan", **core_kw)
        os.makedirs(version)
        shutil.copyfile(spec.model_path, os.path.join(version, "model.plan"))
        _write_plugins(root, meta, options, repo)
    elif platform == "onnxruntime":
        core = ModelConfig(names["core"], platform="onnxruntime_onnx", default_model_filename="model.onnx", **core_kw)
        os.makedirs(version)
        shutil.copyfile(spec.model_path, os.path.join(version, "model.onnx"))
    else:
        params = {"maskrt_backend": spec.backend, "maskrt_device": "cuda" if kind_name == "KIND_GPU" else "cpu"}
        if spec.model_path:
            params["maskrt_model_file"] = os.path.basename(spec.model_path)
        if spec.arch:
            params["maskrt_arch"] = spec.arch
        core_kw["inputs"] = [deploy_in[0], Tensor("image_sizes", "TYPE_INT32", [2])]
        core = ModelConfig(names["core"], backend="python", parameters=params, **core_kw)
        _copy_model_py(folder, names["core"], "core.py")
        if spec.model_path:
            shutil.copyfile(spec.model_path, os.path.join(version, os.path.basename(spec.model_path)))
    _write_config(folder, core, repo)

    k = meta.max_detections
    post_inputs = [Tensor(t.name, t.data_type, t.dims) for t in deploy_out]
    post_inputs += [Tensor("image_sizes", "TYPE_INT32", [2]), Tensor("original_sizes", "TYPE_INT32", [2])]
    post = ModelConfig(names["post"], inputs=post_inputs, outputs=[Tensor(n, t, d) for n, t, d in output_specs(k)],
                       backend="python", instances=options.instances, kind="KIND_CPU", **common)
    _write_config(folder, post, repo)
    with open(os.path.join(_copy_model_py(folder, names["post"], "postprocess.py"), STEP_META), "w") as f:
        f.write(props)

    core_inputs = {t.name: t.name for t in core.inputs}
    ensemble = ModelConfig(
        options.name, platform="ensemble", max_batch_size=b,
        inputs=[Tensor(INPUT_NAME, "TYPE_STRING", [1])], outputs=[Tensor(n, t, d) for n, t, d in output_specs(k)],
        parameters={"maskrt_class_names": json.dumps(list(meta.class_names)), "maskrt_mask_encoding": "coco-rle-counts"},
        steps=[Step(names["pre"], {INPUT_NAME: INPUT_NAME},
                    {"images": "images", "image_sizes": "image_sizes", "original_sizes": "original_sizes"}),
               Step(names["core"], core_inputs, {n: f"core_{n}" for n in OUTPUT_NAMES}),
               Step(names["post"], {**{n: f"core_{n}" for n in OUTPUT_NAMES}, "image_sizes": "image_sizes",
                                    "original_sizes": "original_sizes"}, {n: n for n in OUTPUT_NAMES})])
    _write_config(folder, ensemble, repo)
    _write_kubernetes(root, options, platform == "tensorrt" or kind_name == "KIND_GPU",
                      preload=platform == "tensorrt" and meta.target == "tensorrt")
    with open(os.path.join(root, "README.md"), "w", encoding="utf-8") as f:
        f.write(readme_text(spec, options, meta, platform, names, kind_name))


def _write_plugins(folder: str, meta, options: RepositoryOptions, repo: Repository) -> None:
    """plugins/: the TensorRT plugin library a TensorRT-target engine needs (copied when found here)."""
    from maskrt.plugins.library import library_filename, tensorrt_plugin_library
    from maskrt.plugins.spec import TENSORRT_LIBRARY

    plugins = os.path.join(folder, "plugins")
    os.makedirs(plugins)
    filename = library_filename(TENSORRT_LIBRARY)
    needed = meta.target == "tensorrt"
    found = None
    if needed or options.plugin_library:
        try:
            found = tensorrt_plugin_library(options.plugin_library, needed=True, who="the engine")
        except MaskrtError:
            found = None
    if found:
        shutil.copyfile(found, os.path.join(plugins, filename))
    elif needed:
        repo.notes.append(f"the engine needs the maskrt TensorRT plugin library and none was found here: build it on "
                          f"the serving machine (`maskrt plugins build`) and put {filename} into {plugins}")
    with open(os.path.join(plugins, "README.md"), "w", encoding="utf-8") as f:
        f.write(plugins_readme(filename, needed, bool(found)))


def plugins_readme(filename: str, needed: bool, present: bool) -> str:
    state = ("is here" if present else "is NOT here yet: build it with `maskrt plugins build` on a machine with the "
             "serving container's TensorRT and CUDA, and copy it here")
    need = ("The engine was built from a TensorRT-target export: its RoI pooling runs as maskrt plugin layers, so "
            "the server must load the plugin library before it deserialises the engine." if needed else
            "The engine uses only TensorRT's own layers; no plugin library is needed.")
    return f"""# TensorRT plugins

{need}

`{filename}` {state}. It must be built against the same TensorRT major version as the Triton container
(TensorRT 10.x in {TRITON_IMAGE}; its release notes give the exact version).

Two ways to load it, with this folder mounted at /plugins (`docker run -v "$PWD/plugins":/plugins ...`):

* `LD_PRELOAD=/plugins/{filename}` in the server's environment (`docker run -e LD_PRELOAD=...`, or the
  `env` of the Kubernetes container): the library registers its plugin creators when it loads;
* `tritonserver --backend-config=tensorrt,plugins=/plugins/{filename}` (the TensorRT backend loads each
  library of that `;`-separated list before any engine).
"""


def readme_text(spec, options: RepositoryOptions, meta, platform: str, names: dict, kind_name: str) -> str:
    gpu = kind_name == "KIND_GPU"
    gpus = "--gpus all " if gpu else ""
    preload = (' -v "$PWD/plugins":/plugins -e LD_PRELOAD=/plugins/libmaskrt_trt_plugins.so'
               if platform == "tensorrt" and meta.target == "tensorrt" else "")
    k = meta.max_detections
    source = os.path.basename(spec.model_path) if spec.model_path else f"{spec.arch} (embedded weights)"
    core = {"tensorrt": "TensorRT engine (tensorrt_plan)", "onnxruntime": "ONNX Runtime (onnxruntime_onnx)",
            "python": "a maskrt runner in the python backend"}[platform]
    return f"""# Triton model repository for {source}

Written by `maskrt triton` (maskrt {meta.maskrt_version or ''}). Ask for the model `{options.name}` (an ensemble):

    {options.name}: image -> {names['pre']} (python) -> {names['core']} ({core}) -> {names['post']} (python)

Dynamic batching up to {options.max_batch} images per call, {options.instances} instance(s) of each model
({kind_name}).

## Run it

The python steps import maskrt (and so torch) in the server's Python, with numpy<2, which Triton's python
backend requires; install maskrt from its package or from a wheel of its source (`pip wheel --no-deps .`):

    docker run --rm {gpus}--shm-size=1g -p 8000:8000 -p 8001:8001 -p 8002:8002{preload} \\
      -v "$PWD/models":/models {TRITON_IMAGE} \\
      bash -c 'pip install "maskrt" "numpy<2" && tritonserver --model-repository=/models'

For production, bake the `pip install` into an image (`FROM {TRITON_IMAGE}`) instead of installing at start.
Run the commands in this folder; `models/` is the model repository. Without Docker, `maskrt serve {source}` runs a Triton server on this machine with the same contract.

## Contract

Input `image`: BYTES, dims [1] per batch item: one encoded image file (PNG, JPEG, ...).

| output | type | dims | meaning |
| --- | --- | --- | --- |
| num_detections | INT32 | [1] | how many rows below are detections |
| boxes | FP32 | [{k}, 4] | XYXY in the original image's pixels |
| scores | FP32 | [{k}] | |
| labels | INT32 | [{k}] | class index: {', '.join(f'{i} {n}' for i, n in enumerate(meta.class_names[:12]))}{' ...' if len(meta.class_names) > 12 else ''} |
| masks | BYTES | [{k}] | COCO compressed RLE `counts` of each mask (binarised at 0.5, image size) |

Rows past num_detections are zeros (empty strings for masks). Decode a mask with
`pycocotools.mask.decode({{"size": [H, W], "counts": s}})`. An image that cannot be read fails its own request.

## Client

    maskrt predict --url HOST:8000 --model-name {options.name} photos/ --out predictions/

or tritonclient directly (see maskrt/serving/client.py for the few lines it takes).

## Scale out

`kubernetes/{options.name}.yaml`: a Deployment of the server (readiness and liveness on Triton's health
endpoints), a Service for HTTP, gRPC and metrics, and a HorizontalPodAutoscaler that adds replicas when the average
queue time per request rises (Triton's `nv_inference_queue_duration_us`, through a Prometheus adapter that exposes
it as the pods metric `triton_queue_time_us_per_request`; a CPU target is there as a fallback).
"""


def _write_kubernetes(folder: str, options: RepositoryOptions, gpu: bool, preload: bool = False) -> None:
    name = options.name.replace("_", "-").replace(".", "-").lower()
    env = ""
    if preload:  # the engine's plugin layers: the library must be loaded before the engine is deserialised
        env = ("          env:\n            - {name: LD_PRELOAD, value: /plugins/libmaskrt_trt_plugins.so}\n")
    plugin_mount = "            - {name: plugins, mountPath: /plugins}\n" if preload else ""
    plugin_volume = ("        - name: plugins\n          persistentVolumeClaim: {claimName: " + name + "-plugins}\n"
                     if preload else "")
    limits = "            nvidia.com/gpu: 1\n" if gpu else "            cpu: \"4\"\n            memory: 8Gi\n"
    text = f"""# Triton Inference Server for the maskrt model repository `{options.name}` (written by `maskrt triton`).
# The repository (the models/ folder) is expected at /models in the container: bake it into the image, or mount a volume
# (the claim below). The HorizontalPodAutoscaler's pods metric needs a Prometheus adapter rule such as
#   triton_queue_time_us_per_request = rate(nv_inference_queue_duration_us[1m]) / rate(nv_inference_request_success[1m])
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}-triton
  labels: {{app: {name}-triton}}
spec:
  replicas: {options.replicas}
  selector:
    matchLabels: {{app: {name}-triton}}
  template:
    metadata:
      labels: {{app: {name}-triton}}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "8002"
    spec:
      containers:
        - name: tritonserver
          image: {TRITON_IMAGE}
          command: ["bash", "-c"]
          args: ["pip install maskrt 'numpy<2' && tritonserver --model-repository=/models"]
{env}          ports:
            - {{name: http, containerPort: 8000}}
            - {{name: grpc, containerPort: 8001}}
            - {{name: metrics, containerPort: 8002}}
          readinessProbe:
            httpGet: {{path: /v2/health/ready, port: http}}
            periodSeconds: 5
          livenessProbe:
            httpGet: {{path: /v2/health/live, port: http}}
            initialDelaySeconds: 60
            periodSeconds: 10
          resources:
            limits:
{limits}          volumeMounts:
            - {{name: models, mountPath: /models}}
            - {{name: dshm, mountPath: /dev/shm}}
{plugin_mount}      volumes:
        - name: models
          persistentVolumeClaim: {{claimName: {name}-models}}
        - name: dshm
          emptyDir: {{medium: Memory, sizeLimit: 1Gi}}
{plugin_volume}---
apiVersion: v1
kind: Service
metadata:
  name: {name}-triton
  labels: {{app: {name}-triton}}
spec:
  selector: {{app: {name}-triton}}
  ports:
    - {{name: http, port: 8000, targetPort: http}}
    - {{name: grpc, port: 8001, targetPort: grpc}}
    - {{name: metrics, port: 8002, targetPort: metrics}}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {name}-triton
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {name}-triton
  minReplicas: {options.replicas}
  maxReplicas: {options.max_replicas}
  metrics:
    - type: Pods
      pods:
        metric:
          name: triton_queue_time_us_per_request
        target:
          type: AverageValue
          averageValue: "50000"
    - type: Resource
      resource:
        name: cpu
        target: {{type: Utilization, averageUtilization: 80}}
"""
    os.makedirs(os.path.join(folder, "kubernetes"))
    with open(os.path.join(folder, "kubernetes", f"{options.name}.yaml"), "w", encoding="utf-8") as f:
        f.write(text)
