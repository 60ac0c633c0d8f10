"""``maskrt predict``: detections drawn on images, and COCO results, for a folder of outputs."""

from __future__ import annotations

import click

from maskrt.cli.options import checkpoint_kwargs, device_option, model_options
from maskrt.core.errors import MaskrtError


@click.command("predict", short_help="Detect objects in images; draw and save them.", epilog="""\b
Examples:
  maskrt predict shapes.onnx photo.jpg --out predictions/
  maskrt predict model.onnx photos/ --score-threshold 0.7
  maskrt predict model.pth 'shots/**/*.png' --arch maskrcnn_resnet50_fpn""")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@click.argument("images", metavar="IMAGES...", nargs=-1, required=True)
@model_options
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
              show_default=True, help="auto: tensorrt for engines, onnxruntime for .onnx, torch for checkpoints.")
@device_option
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Keep detections at or above this.")
@click.option("--max-pixels", type=int, default=None, help="Read images larger than the default limit of about 89 M "
              "pixels (the limit guards against decompression bombs).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="predictions", show_default=True,
              help="Folder for the drawings, predictions.json (COCO results) and summary.json.")
def predict_cmd(model_path, images, arch, num_classes, input_size, backend, device, score_threshold, max_pixels,
                out_dir):
    """Detect objects in IMAGES (files, folders or glob patterns) with MODEL.

    MODEL is a TensorRT engine (.engine, from `maskrt build`), an ONNX export, or a checkpoint with --arch. Writes
    one PNG per image with masks, boxes, labels and scores drawn, predictions.json (COCO results, RLE masks) and
    summary.json into --out; inputs are never overwritten and names never collide. Ctrl-C keeps the images done.
    """

    from maskrt.backends.select import RunnerSpec
    from maskrt.core.fileio import check_output_folder
    from maskrt.inference import Predictor
    from maskrt.inference.files import collect_images, predict_to_folder

    if not 0.0 <= score_threshold <= 1.0:
        raise MaskrtError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    if max_pixels is not None and max_pixels < 1:
        raise MaskrtError(f"--max-pixels must be >= 1, got {max_pixels}")
    spec = RunnerSpec(model_path, backend=backend, device=device,
                      **checkpoint_kwargs(model_path, arch, num_classes, input_size))
    spec.check()
    collect_images(images)  # refuse empty folders and unmatched patterns before loading the model
    check_output_folder(out_dir, "--out")  # created once the model is open

    def report(source, drawing, outcome):  # one line per image, never wrapped
        if drawing is None and isinstance(outcome, MaskrtError):
            click.echo(f"skipped: {outcome}", err=True)
        else:
            click.echo(f"{source}: {len(outcome)} detections" + (f" -> {drawing}" if drawing else ""), err=True)

    predictor = Predictor(spec.open(None), score_threshold=score_threshold, max_pixels=max_pixels)
    try:
        with predictor:
            run = predict_to_folder(predictor, images, out_dir, on_image=report)
    except KeyboardInterrupt:
        click.echo(f"interrupted: {out_dir}/predictions.json holds the images done so far (summary.json: complete "
                   "false)", err=True)
        raise
    click.echo(f"wrote {len(run.done)} image(s) and {run.predictions_path} ({len(run.results)} detections)")
    if run.failed:
        raise MaskrtError(f"{len(run.failed)} of {len(run.done) + len(run.failed)} image(s) could not be read "
                          "(listed above)")
