"""``maskrt predict``: detections drawn on images, and COCO results, for a folder of outputs."""

from __future__ import annotations

import click

from maskrt.cli.options import checkpoint_kwargs, device_option, model_options
from maskrt.core.errors import MaskrtError


@click.command("predict", short_help="Detect objects in images; draw and save them.", epilog="""\b
Examples:
  maskrt predict shapes.onnx photo.jpg --out predictions/
  maskrt predict model.onnx photos/ --score-threshold 0.7
  maskrt predict model.pth 'shots/**/*.png' --arch maskrcnn_resnet50_fpn
  maskrt predict --url 127.0.0.1:8000 photos/        (a model that `maskrt serve` serves)""")
@click.argument("args", metavar="[MODEL] IMAGES...", nargs=-1, required=True)
@model_options
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
              show_default=True, help="auto: tensorrt for engines, onnxruntime for .onnx, torch for checkpoints.")
@device_option
@click.option("--score-threshold", type=float, default=0.5, show_default=True, help="Keep detections at or above this.")
@click.option("--max-pixels", type=int, default=None, help="Read images larger than the default limit of about 89 M "
              "pixels (the limit guards against decompression bombs).")
@click.option("--url", help="host:port of a Triton server's HTTP endpoint (`maskrt serve`): predict there instead "
              "of loading MODEL here.")
@click.option("--model-name", default="maskrt", show_default=True, help="With --url: the served model's name.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="predictions", show_default=True,
              help="Folder for the drawings, predictions.json (COCO results) and summary.json.")
def predict_cmd(args, arch, num_classes, input_size, backend, device, score_threshold, max_pixels, url, model_name,
                out_dir):
    """Detect objects in IMAGES (files, folders or glob patterns) with MODEL.

    MODEL is a TensorRT engine (.engine, from `maskrt build`), an ONNX export, or a checkpoint with --arch. Writes
    one PNG per image with masks, boxes, labels and scores drawn, predictions.json (COCO results, RLE masks) and
    summary.json into --out; inputs are never overwritten and names never collide. Ctrl-C keeps the images done.
    With --url there is no MODEL: the served model predicts, and the files are the same.
    """

    from maskrt.backends.select import RunnerSpec
    from maskrt.core.fileio import check_output_folder
    from maskrt.inference import Predictor
    from maskrt.inference.files import collect_images, predict_to_folder

    if not 0.0 <= score_threshold <= 1.0:
        raise MaskrtError(f"--score-threshold must be in [0, 1], got {score_threshold}")
    if max_pixels is not None and max_pixels < 1:
        raise MaskrtError(f"--max-pixels must be >= 1, got {max_pixels}")
    if url:
        given = [o for o, v in (("--arch", arch), ("--num-classes", num_classes), ("--input-size", input_size),
                                ("--backend", None if backend == "auto" else backend),
                                ("--device", None if device == "cpu" else device)) if v is not None]
        if given:
            raise MaskrtError(f"{', '.join(given)} do not apply with --url (the server runs the model)")
        images = args
    else:
        if len(args) < 2:
            raise MaskrtError("give MODEL and at least one image (or --url host:port and images)")
        model_path, images = args[0], args[1:]
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

    if url:
        from maskrt.serving.client import RemotePredictor

        predictor = RemotePredictor(url, model_name, score_threshold=score_threshold, max_pixels=max_pixels)
    else:
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
