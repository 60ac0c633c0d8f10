"""``maskrt`` command-line entry point.

Only click is imported at module level so that ``maskrt --help`` works without torch; each command imports
what it needs. A :class:`maskrt.MaskrtError` is printed as one line and exits with status 2.
"""

from __future__ import annotations


import click

from maskrt import __version__
from maskrt.errors import MaskrtError


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except MaskrtError as e:
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="maskrt")
def cli() -> None:
    """maskrt: Mask R-CNN from PyTorch to ONNX and TensorRT, with one runtime that reports latency and FPS."""


@cli.command("models")
def models_cmd() -> None:
    """List the model presets that --arch accepts."""
    from maskrt.model.presets import PRESETS

    for name in sorted(PRESETS):
        click.echo(f"{name:28s} {PRESETS[name].description}")


@cli.command("detect")
@click.option("--arch", default="maskrcnn_resnet50_fpn", show_default=True, help="Model preset (see `maskrt models`).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint (.pth state_dict or .safetensors).")
@click.option("--random-weights", is_flag=True, help="Use randomly initialised weights (detections are meaningless).")
@click.option("--num-classes", type=int, help="Classes including background (default: the preset's).")
@click.option("--image", "image_path", type=click.Path(dir_okay=False), help="Image file; default: a generated image.")
@click.option("--size", default="480x640", show_default=True, help="HxW of the generated image.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the generated image and random weights.")
@click.option("--min-size", type=int, help="Resize short side to this (default: the preset's, 800 for COCO).")
@click.option("--max-size", type=int, help="Cap on the long side after resize (default: the preset's, 1333 for COCO).")
@click.option("--score-threshold", type=float, default=0.05, show_default=True, help="Keep detections above this score.")
@click.option("--top", type=int, default=10, show_default=True, help="Print at most this many detections.")
def detect_cmd(arch, weights, random_weights, num_classes, image_path, size, seed, min_size, max_size, score_threshold, top):
    """Run the eager model on one image and print its detections."""
    import time

    import torch

    from maskrt.data.images import read_image, synthetic_image

    if top < 0:
        raise MaskrtError(f"--top must be >= 0, got {top}")
    limits = {k: v for k, v in (("min_size", min_size), ("max_size", max_size)) if v is not None}
    model = _load_model(arch, weights, random_weights, num_classes, seed, box_score_thresh=score_threshold, **limits)
    if image_path:
        image = read_image(image_path)
        source = image_path
    else:
        h, w = _parse_hw(size, "--size")
        image = synthetic_image(h, w, seed)
        source = f"generated {h}x{w} image (seed {seed})"
    start = time.perf_counter()
    with torch.inference_mode():
        result = model([image.float() / 255.0])[0]
    elapsed = time.perf_counter() - start
    n = result["boxes"].shape[0]
    from maskrt.export.onnx_export import default_class_names

    names = model.class_names or default_class_names(model.num_classes)
    origin = "random weights" if random_weights else weights or "embedded weights"
    click.echo(f"{arch} ({origin}) on {source}: {n} detections in {elapsed:.2f} s")
    if n:
        click.echo(f"{'#':>3} {'label':>10} {'score':>7}  {'x1':>7} {'y1':>7} {'x2':>7} {'y2':>7}  {'mask px':>7}")
    for i in range(min(n, top)):
        x1, y1, x2, y2 = result["boxes"][i].tolist()
        area = int((result["masks"][i, 0] > 0.5).sum())
        click.echo(
            f"{i:>3} {names[int(result['labels'][i])]:>10} {float(result['scores'][i]):>7.4f}  "
            f"{x1:>7.1f} {y1:>7.1f} {x2:>7.1f} {y2:>7.1f}  {area:>7d}"
        )


def _load_model(arch, weights, random_weights, num_classes, seed=0, **kwargs):
    """Build ``arch`` and load ``weights``; without either option a preset that ships weights uses them."""
    import torch

    from maskrt.model import build, load_checkpoint
    from maskrt.model.presets import get_preset

    preset = get_preset(arch)
    if weights and random_weights:
        raise MaskrtError("pass one of --weights FILE or --random-weights, not both")
    if not weights and not random_weights:
        weights = preset.weights_path()
        if weights is None:
            raise MaskrtError(f"{arch} ships no weights: pass --weights FILE (a checkpoint) or --random-weights")
    torch.manual_seed(seed)
    model = build(arch, num_classes=num_classes, **kwargs)
    if weights:
        load_checkpoint(weights, model)
    return model.eval()


def _read_class_names(path, num_classes):
    if path is None:
        return None
    try:
        with open(path, encoding="utf-8") as f:
            names = [line.strip() for line in f if line.strip()]
    except OSError as e:
        raise MaskrtError(f"cannot read class names from {path}: {e.strerror}") from None
    if len(names) == num_classes - 1:
        names = ["__background__"] + names
    if len(names) != num_classes:
        raise MaskrtError(
            f"{path} lists {len(names)} class names; the model has {num_classes} classes including background "
            f"(give {num_classes - 1} names, or {num_classes} with the background first)"
        )
    return names


def _human_size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024
    return f"{n} B"


@cli.command("export")
@click.option("--arch", required=True, help="Model preset (see `maskrt models`).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint (.pth state_dict or .safetensors).")
@click.option("--random-weights", is_flag=True, help="Export randomly initialised weights (for testing only).")
@click.option("--num-classes", type=int, help="Classes including background (default: the preset's, 91 for COCO).")
@click.option("--input-size", help="HxW of the uint8 input (default: the preset's, 800x1344 for COCO).")
@click.option("--min-size", type=int, help="Resize short side to this (default: the preset's at its input size, "
              "else min(H, W)).")
@click.option("--max-size", type=int, help="Cap on the long side (default: the preset's at its input size, "
              "else max(H, W)).")
@click.option("--batch", type=int, default=1, show_default=True, help="Fixed batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension symbolic.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset, 16 to 22.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--target", type=click.Choice(["portable", "tensorrt"]), default="portable", show_default=True,
              help="portable: standard ONNX ops; tensorrt: RoI pooling as maskrt TensorRT plugin nodes.")
@click.option("--max-detections", type=int, help="Detections per image (default: the model's, 100).")
@click.option("--score-threshold", type=float, help="Minimum detection score (default: the model's, 0.05).")
@click.option("--class-names", type=click.Path(dir_okay=False), help="Text file, one class name per line.")
@click.option("--verify", is_flag=True, help="Compare ONNX Runtime with PyTorch on test images; fail beyond tolerance.")
@click.option("--verify-images", multiple=True, type=click.Path(dir_okay=False), help="Extra images for --verify.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx file.")
def export_cmd(arch, weights, random_weights, num_classes, input_size, min_size, max_size, batch, dynamic_batch, opset,
               precision, target, max_detections, score_threshold, class_names, verify, verify_images, output):
    """Export a Mask R-CNN to ONNX (RoiAlign, NonMaxSuppression; fp32 or fp16)."""
    import os

    from maskrt.export.onnx_export import parse_size, to_onnx
    from maskrt.model.presets import get_preset, resolve_sizes

    sizes = resolve_sizes(get_preset(arch).name, parse_size(input_size) if input_size else None, min_size, max_size)
    h, w = sizes.pop("input_size")
    model = _load_model(arch, weights, random_weights, num_classes, **sizes)
    names = _read_class_names(class_names, model.num_classes)
    click.echo(f"exporting {arch} at {h}x{w}, batch {'dynamic' if dynamic_batch else batch}, opset {opset}, {precision}, "
               f"{target} graph ...")
    result = to_onnx(model, output, input_size=(h, w), batch=batch, dynamic_batch=dynamic_batch, opset=opset,
                     precision=precision, max_detections=max_detections, score_threshold=score_threshold,
                     class_names=names, target=target)
    click.echo(f"wrote {os.path.abspath(result.path)} ({_human_size(result.size_bytes)}) in {result.seconds:.1f} s")
    failed = False
    if verify:
        from maskrt.data.images import read_image, synthetic_image
        from maskrt.export.onnx_export import _detection_settings
        from maskrt.export.verify import verify_onnx

        images = [synthetic_image(h, w, 101), synthetic_image(int(h * 0.75), int(w * 0.6), 102),
                  synthetic_image(w // 2, h // 2, 103)]
        sources = ["generated HxW", "generated smaller", "generated portrait"]
        for p in verify_images:
            images.append(read_image(p))
            sources.append(os.path.basename(p))
        with _detection_settings(model, max_detections, score_threshold):
            report = verify_onnx(model, result.path, images, sources=sources)
        click.echo(report.table())
        failed = not report.ok
    click.echo("next:")
    click.echo(f"  maskrt predict {result.path} IMAGE.jpg --out predictions/")
    if failed:
        raise MaskrtError("verification failed: ONNX Runtime's outputs are beyond tolerance (see the table above)")


@cli.command("predict")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("images", nargs=-1, required=True)
@click.option("--arch", help="Model preset, when MODEL is a checkpoint.")
@click.option("--num-classes", type=int, help="Classes, when MODEL is a checkpoint (default: the preset's).")
@click.option("--input-size", help="HxW, when MODEL is a checkpoint (default: the preset's).")
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
              show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True)
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Keep detections at or above this.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="predictions", show_default=True)
def predict_cmd(model_path, images, arch, num_classes, input_size, backend, device, score_threshold, out_dir):
    """Detect objects in IMAGES with MODEL (.engine from `maskrt build`, .onnx export, or a checkpoint with --arch).

    Writes one PNG per image with masks, boxes, labels and scores drawn, and predictions.json (COCO results,
    RLE masks) into --out.
    """
    import json
    import os

    from rich.progress import Progress

    from maskrt.data.coco import detections_to_coco
    from maskrt.data.draw import draw_detections
    from maskrt.runtime import OrtRunner, Predictor, TorchRunner
    from maskrt.runtime.predictor import to_uint8_chw

    from maskrt.export.engine import is_engine_path

    is_onnx = model_path.lower().endswith(".onnx")
    is_engine = is_engine_path(model_path)
    if backend == "auto":
        backend = "tensorrt" if is_engine else "onnxruntime" if is_onnx else "torch"
    if is_engine != (backend == "tensorrt"):
        raise MaskrtError("--backend tensorrt takes a TensorRT engine (.engine), and an engine runs with tensorrt only")
    if is_onnx and backend == "torch":
        raise MaskrtError("--backend torch needs a checkpoint with --arch, not an .onnx file")
    if not is_onnx and backend == "onnxruntime":
        raise MaskrtError("--backend onnxruntime needs an .onnx file; export the checkpoint with `maskrt export`")
    if not 0.0 <= score_threshold <= 1.0:
        raise MaskrtError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    from maskrt.fileio import ensure_writable_folder

    ensure_writable_folder(out_dir)
    if is_engine:
        from maskrt.runtime.profiling import RunnerSpec

        runner = RunnerSpec(model_path, backend="tensorrt").open(None)  # checks TensorRT and the GPU first
    elif is_onnx:
        if device == "cuda":
            runner = OrtRunner(model_path, providers=["CUDAExecutionProvider", "CPUExecutionProvider"])
        else:
            runner = OrtRunner(model_path, providers=["CPUExecutionProvider"])
    else:
        if not arch:
            raise MaskrtError("MODEL is a checkpoint: pass --arch (see `maskrt models`), or export it to .onnx first")
        from maskrt.export.onnx_export import parse_size
        from maskrt.model.presets import get_preset, resolve_sizes

        sizes = resolve_sizes(get_preset(arch).name, parse_size(input_size) if input_size else None)
        h, w = sizes.pop("input_size")
        model = _load_model(arch, model_path, False, num_classes, **sizes)
        runner = TorchRunner(model, (h, w), 1, device=device)
    results, failures = [], 0
    with Predictor(runner, score_threshold=score_threshold) as predictor, Progress(
        transient=True, disable=len(images) < 2
    ) as progress:
        task = progress.add_task("predicting", total=len(images))
        for image_id, path in enumerate(images):
            try:
                tensor, _ = to_uint8_chw(path)
            except MaskrtError as e:
                click.echo(f"skipped: {e}", err=True)
                failures += 1
                progress.advance(task)
                continue
            det = predictor.predict([tensor])[0]
            name = os.path.splitext(os.path.basename(path))[0]
            png = os.path.join(out_dir, f"{name}.png")
            _atomic_save_png(draw_detections(tensor, det), png)
            results.extend(detections_to_coco(det, image_id, os.path.basename(path)))
            progress.console.print(f"{path}: {len(det)} detections -> {png}")
            progress.advance(task)
    json_path = os.path.join(out_dir, "predictions.json")
    tmp = json_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(results, f)
    os.replace(tmp, json_path)
    click.echo(f"wrote {len(images) - failures} image(s) and {json_path} ({len(results)} detections)")
    if failures:
        raise MaskrtError(f"{failures} of {len(images)} image(s) could not be read (listed above)")


def _atomic_save_png(pil_image, path):
    import os

    tmp = path + ".tmp"
    pil_image.save(tmp, format="PNG")
    os.replace(tmp, path)


def _parse_hw(text: str, option: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise MaskrtError(f"{option} must look like HxW (e.g. 480x640), got {text!r}") from None
    if h < 1 or w < 1:
        raise MaskrtError(f"{option} must be positive, got {text!r}")
    return h, w


from maskrt.cli import perf as _perf  # noqa: E402,F401  (registers profile and bench)
from maskrt.cli import plugins_cmd as _plugins_cmd  # noqa: E402,F401  (registers plugins build / path)
from maskrt.cli import trt_cmd as _trt_cmd  # noqa: E402,F401  (registers build and env)
from maskrt.cli import train_cmd as _train_cmd  # noqa: E402,F401  (registers train)
from maskrt.cli import eval_cmd as _eval_cmd  # noqa: E402,F401  (registers eval)
from maskrt.cli import data_cmd as _data_cmd  # noqa: E402,F401  (registers data shapes)
from maskrt.cli import demo_cmd as _demo_cmd  # noqa: E402,F401  (registers demo)


def main() -> None:
    cli(prog_name="maskrt")


if __name__ == "__main__":
    main()
