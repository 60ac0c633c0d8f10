"""``maskrt export``: a checkpoint (or a preset's embedded weights) to an ONNX file, optionally verified."""

from __future__ import annotations

import click

from maskrt.core.errors import MaskrtError


@click.command("export", short_help="Export a Mask R-CNN to ONNX.", epilog="""\b
Examples:
  maskrt export --arch shapes -o shapes.onnx --verify
  maskrt export --arch maskrcnn_resnet50_fpn --weights maskrcnn_resnet50_fpn_coco.pth -o model.onnx
  maskrt export --arch maskrcnn_resnet50_fpn --weights coco.pth --precision fp16 --dynamic-batch -o model_fp16.onnx
  maskrt export --arch shapes --dynamic-batch --dynamic-size -o shapes_dynamic.onnx""")
@click.option("--arch", required=True, help="Model preset (see `maskrt models`).")
@click.option("--weights", type=click.Path(dir_okay=False), help="Checkpoint (.pth state_dict or .safetensors); "
              "default: the preset's embedded weights.")
@click.option("--random-weights", is_flag=True, help="Export randomly initialised weights (for testing only).")
@click.option("--num-classes", type=int, help="Classes including background (default: the preset's, 91 for COCO).")
@click.option("--input-size", help="HxW of the uint8 input (default: the preset's, 800x1344 for COCO).")
@click.option("--min-size", type=int, help="Resize short side to this (default: the preset's at its input size, "
              "else min(H, W)).")
@click.option("--max-size", type=int, help="Cap on the long side (default: the preset's at its input size, "
              "else max(H, W)).")
@click.option("--batch", type=int, default=1, show_default=True, help="Fixed batch size.")
@click.option("--dynamic-batch", is_flag=True, help="Make the batch dimension symbolic.")
@click.option("--dynamic-size", is_flag=True, help="Make height and width symbolic: every image runs at its own size "
              "(padded to 32), none is shrunk to a canvas; --input-size is then the size it is tuned at.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset, 16 to 22.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--target", type=click.Choice(["portable", "tensorrt"]), default="portable", show_default=True,
              help="portable: standard ONNX ops; tensorrt: RoI pooling as maskrt TensorRT plugin nodes.")
@click.option("--max-detections", type=int, help="Detections per image (default: the model's, 100).")
@click.option("--score-threshold", type=float, help="Minimum detection score (default: the model's, 0.05).")
@click.option("--class-names", type=click.Path(dir_okay=False), help="Text file, one class name per line.")
@click.option("--verify", is_flag=True, help="Compare ONNX Runtime with PyTorch on test images; on failure nothing "
              "is written.")
@click.option("--verify-images", multiple=True, type=click.Path(dir_okay=False), help="Extra images for --verify.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="Output .onnx file.")
def export_cmd(arch, weights, random_weights, num_classes, input_size, min_size, max_size, batch, dynamic_batch,
               dynamic_size, opset, precision, target, max_detections, score_threshold, class_names, verify,
               verify_images, output):
    """Export a Mask R-CNN to ONNX (RoiAlign, NonMaxSuppression; fp32 or fp16)."""
    import os

    from maskrt.check import check_model
    from maskrt.core.fileio import check_output_file
    from maskrt.core.formatting import human_bytes
    from maskrt.core.parsing import parse_size
    from maskrt.data.images import read_image
    from maskrt.evaluation.verify import export_checks
    from maskrt.export.onnx_export import to_onnx
    from maskrt.model.meta import read_class_names
    from maskrt.model.presets import get_preset, load_model, resolve_sizes

    if verify_images and not verify:
        raise MaskrtError("--verify-images needs --verify")
    if dynamic_batch and click.get_current_context().get_parameter_source("batch").name != "DEFAULT":
        raise MaskrtError("--batch fixes the batch size and --dynamic-batch makes it symbolic; give one of them")
    check_output_file(output, "-o", inputs=[weights, class_names, *verify_images])
    sizes = resolve_sizes(get_preset(arch).name, parse_size(input_size) if input_size else None, min_size, max_size)
    h, w = sizes.pop("input_size")
    extra = [(read_image(p), os.path.basename(p)) for p in verify_images]  # unreadable images: refused before work
    model = load_model(arch, weights, random_weights, num_classes, **sizes)
    names = read_class_names(class_names, model.num_classes)
    size = f"{h}x{w}" + (" (dynamic size)" if dynamic_size else "")
    click.echo(f"exporting {arch} at {size}, batch {'dynamic' if dynamic_batch else batch}, opset {opset}, {precision}, "
               f"{target} graph ...")
    check = export_checks(model, (h, w), extra, max_detections, score_threshold, echo=click.echo) if verify else None
    result = to_onnx(model, output, input_size=(h, w), batch=batch, dynamic_batch=dynamic_batch, opset=opset,
                     precision=precision, max_detections=max_detections, score_threshold=score_threshold,
                     class_names=names, target=target, dynamic_size=dynamic_size, before_commit=check)
    click.echo(f"wrote {os.path.abspath(result.path)} ({human_bytes(result.size_bytes)}) in {result.seconds:.1f} s")
    report = check_model(result.path, max_batch=8 if dynamic_batch else batch)
    click.echo(report.summary() + ("; `maskrt check` on the file explains each" if report.errors or report.warnings
                                   else ""))
    for f in report.errors + report.warnings:
        click.echo(f"  {f.severity} [{f.rule}] {f.node}: {f.message}")
    click.echo("next:")
    click.echo(f"  maskrt predict {result.path} IMAGE.jpg --out predictions/")
