"""``maskrt export``: a checkpoint (or a preset's embedded weights) to an ONNX file, optionally verified."""

from __future__ import annotations

import click

from maskrt.core.errors import MaskrtError


@click.command("export", short_help="Export a Mask R-CNN to ONNX.", epilog="""\b
Examples:
  maskrt export --arch shapes -o shapes.onnx --verify
  maskrt export --arch maskrcnn_resnet50_fpn --weights maskrcnn_resnet50_fpn_coco.pth -o model.onnx
  maskrt export --arch maskrcnn_resnet50_fpn --weights coco.pth --precision fp16 --dynamic-batch -o model_fp16.onnx
  maskrt export --arch shapes --dynamic-batch --dynamic-size -o shapes_dynamic.onnx
  maskrt export --arch shapes --precision int8 --calibration calib/ -o shapes_int8.onnx
  maskrt export --arch shapes --precision int8 --calibration calib/ --dataset val/annotations.json
                --max-ap-drop 0.5 -o shapes_int8.onnx
  maskrt export --from-onnx model_fp32.onnx --precision int8 --calibration calib/ --keep-float mask_head
                -o model_int8.onnx""")
@click.option("--arch", help="Model preset (see `maskrt models`); required unless --from-onnx.")
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
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
              help="int8: explicit Q/DQ on the convolutions and GEMMs (calibrated with --calibration); RoI Align, "
                   "box decoding and NMS stay float.")
@click.option("--calibration", type=click.Path(), help="int8: folder of calibration images (searched recursively), "
              "prepared as the Predictor prepares them.")
@click.option("--calibration-count", type=int, default=64, show_default=True, help="int8: calibration images used.")
@click.option("--calibration-method", type=click.Choice(["minmax", "percentile", "entropy"]), default="minmax",
              show_default=True, help="int8: how activation ranges are chosen (see README, INT8).")
@click.option("--keep-float", help="int8: parts kept in float, comma-separated: stem, layer1-layer4, fpn, rpn, "
              "box_head, mask_head (or trunk, backbone, heads).")
@click.option("--dataset", type=click.Path(dir_okay=False), help="int8: COCO annotations (images in images/ beside "
              "it): evaluate fp32 and int8 and write nothing when int8 loses more than --max-ap-drop.")
@click.option("--max-ap-drop", type=float, default=1.0, show_default=True, help="int8 with --dataset: largest "
              "allowed bbox or segm AP drop, in points.")
@click.option("--from-onnx", "from_onnx", type=click.Path(dir_okay=False), help="int8: quantize this fp32 export "
              "instead of exporting --arch.")
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
               dynamic_size, opset, precision, calibration, calibration_count, calibration_method, keep_float, dataset,
               max_ap_drop, from_onnx, target, max_detections, score_threshold, class_names, verify, verify_images,
               output):
    """Export a Mask R-CNN to ONNX (RoiAlign, NonMaxSuppression; fp32, fp16 or int8)."""
    import os

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
    check_output_file(output, "-o", inputs=[weights, class_names, from_onnx, *verify_images])
    if precision == "int8" or from_onnx:
        return _int8(arch, from_onnx, precision, calibration, calibration_count, calibration_method, keep_float,
                     dataset, max_ap_drop, target, verify, output, locals())
    int8_only = {"--calibration": calibration, "--keep-float": keep_float, "--dataset": dataset}
    given = [k for k, v in int8_only.items() if v]
    if given:
        raise MaskrtError(f"{given[0]} applies to --precision int8")
    if not arch:
        raise MaskrtError("give --arch (the model preset; see `maskrt models`)")
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
    _check_report(result.path, max_batch=8 if dynamic_batch else batch)


def _int8(arch, from_onnx, precision, calibration, count, method, keep_float, dataset, max_ap_drop, target, verify,
          output, args):
    """``--precision int8``: export (or read) the fp32 graph, calibrate, optionally gate on AP, write."""
    import os

    from maskrt.core.formatting import human_bytes
    from maskrt.evaluation.int8 import export_int8
    from maskrt.export.int8 import Int8Recipe, calibration_images, load_fp32, parse_parts

    if precision != "int8":
        raise MaskrtError("--from-onnx quantizes an fp32 export: add --precision int8")
    if target != "portable":
        raise MaskrtError("--precision int8 writes a portable graph (TensorRT runs its Q/DQ natively); drop "
                          "--target tensorrt")
    if from_onnx and arch:
        raise MaskrtError("give --arch (export, then quantize) or --from-onnx (quantize an export), not both")
    if not from_onnx and not arch:
        raise MaskrtError("give --arch (the model preset; see `maskrt models`) or --from-onnx FILE")
    if from_onnx and verify:
        raise MaskrtError("--verify compares with the PyTorch model: use --arch (and --weights), or run `maskrt "
                          "verify` on the output")
    recipe = Int8Recipe(method=method, keep_float=parse_parts(keep_float))
    recipe.check()
    proto = load_fp32(from_onnx) if from_onnx else None  # an fp16 or quantized input: refused first
    images = calibration_images(calibration, count)  # bad folders refused before any work
    coco = None
    if dataset:
        from maskrt.evaluation.coco import load_coco

        coco = load_coco(dataset, os.path.join(os.path.dirname(os.path.abspath(dataset)), "images"))
    check = None
    if proto is not None:
        click.echo(f"quantizing {from_onnx} to int8 ({recipe.name}) ...")
    else:
        proto, check = _fp32_proto(arch, args)
    result = export_int8(proto, output, images, recipe, dataset=coco, max_drop=max_ap_drop, before_commit=check,
                         echo=click.echo)
    click.echo(f"wrote {os.path.abspath(result.path)} ({human_bytes(result.size_bytes)}) in {result.seconds:.1f} s, "
               f"calibrated on {result.calibration_images} image(s)")
    parts = ", ".join(f"{p} {c['quantized_ops']}/{c['quantized_ops'] + c['float_ops']}" for p, c in result.qdq.items())
    click.echo(f"quantized operators per part: {parts}")
    _check_report(result.path, 8 if args["dynamic_batch"] else args["batch"])


def _fp32_proto(arch, a):
    """The fp32 graph of ``--arch`` with the command's export options, and the --verify check (or None)."""
    import os

    from maskrt.core.parsing import parse_size
    from maskrt.data.images import read_image
    from maskrt.evaluation.verify import export_checks
    from maskrt.export.onnx_export import export_model_proto
    from maskrt.model.meta import read_class_names
    from maskrt.model.presets import get_preset, load_model, resolve_sizes

    sizes = resolve_sizes(get_preset(arch).name, parse_size(a["input_size"]) if a["input_size"] else None,
                          a["min_size"], a["max_size"])
    h, w = sizes.pop("input_size")
    extra = [(read_image(p), os.path.basename(p)) for p in a["verify_images"]]
    model = load_model(arch, a["weights"], a["random_weights"], a["num_classes"], **sizes)
    names = read_class_names(a["class_names"], model.num_classes)
    click.echo(f"exporting {arch} at {h}x{w}, batch {'dynamic' if a['dynamic_batch'] else a['batch']}, opset "
               f"{a['opset']}, fp32 graph for int8 ...")
    proto = export_model_proto(model, input_size=(h, w), batch=a["batch"], dynamic_batch=a["dynamic_batch"],
                               opset=a["opset"], precision="fp32", max_detections=a["max_detections"],
                               score_threshold=a["score_threshold"], class_names=names, dynamic_size=a["dynamic_size"])
    check = (export_checks(model, (h, w), extra, a["max_detections"], a["score_threshold"], echo=click.echo)
             if a["verify"] else None)
    return proto, check


def _check_report(path, max_batch):
    from maskrt.check import check_model

    report = check_model(path, max_batch=max_batch)
    click.echo(report.summary() + ("; `maskrt check` on the file explains each" if report.errors or report.warnings
                                   else ""))
    for f in report.errors + report.warnings:
        click.echo(f"  {f.severity} [{f.rule}] {f.node}: {f.message}")
    click.echo("next:")
    click.echo(f"  maskrt predict {path} IMAGE.jpg --out predictions/")
