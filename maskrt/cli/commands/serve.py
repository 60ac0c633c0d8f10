"""``maskrt serve``: a Triton server here (no Docker), serving one model through maskrt's runtime."""

from __future__ import annotations

import click

from maskrt.cli.options import checkpoint_kwargs, device_option, model_options


@click.command("serve", short_help="Serve a model with Triton Inference Server (HTTP, gRPC, metrics).", epilog="""\b
Examples:
  maskrt serve shapes.onnx
  maskrt serve model.onnx --max-batch 8 --http-port 9000 --grpc-port 9001 --metrics-port 9002
  maskrt serve maskrt/model/weights/shapes.safetensors --arch shapes --name shapes
Clients: maskrt predict --url 127.0.0.1:8000 IMAGES... ; tritonclient (input "image", BYTES [1]).""")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@model_options
@click.option("--backend", type=click.Choice(["auto", "torch", "onnxruntime", "tensorrt"]), default="auto",
              show_default=True, help="auto: tensorrt for engines, onnxruntime for .onnx, torch for checkpoints.")
@device_option
@click.option("--name", default="maskrt", show_default=True, help="Model name clients ask for.")
@click.option("--max-batch", type=int, default=8, show_default=True,
              help="Largest batch Triton's dynamic batcher forms (and max_batch_size in the config).")
@click.option("--address", default="127.0.0.1", show_default=True,
              help="Address the three endpoints listen on (0.0.0.0: every interface).")
@click.option("--http-port", type=int, default=8000, show_default=True)
@click.option("--grpc-port", type=int, default=8001, show_default=True)
@click.option("--metrics-port", type=int, default=8002, show_default=True, help="Prometheus metrics (/metrics).")
@click.option("--max-queue-delay-us", type=int, default=2000, show_default=True,
              help="How long the dynamic batcher may hold a request to fill a batch.")
@click.option("--max-pixels", type=int, default=None, help="Refuse images with more pixels (default: about 89 M).")
@click.option("--log", "log_path", type=click.Path(dir_okay=False), help="Keep the server's log in this file.")
def serve_cmd(model_path, arch, num_classes, input_size, backend, device, name, max_batch, address, http_port,
              grpc_port, metrics_port, max_queue_delay_us, max_pixels, log_path):
    """Serve MODEL (an ONNX export, a TensorRT engine, or a checkpoint with --arch) with the tritonserver of
    nvidia-pytriton until Ctrl-C or SIGTERM.

    One model NAME: input "image" BYTES [1] (an encoded image file per batch item); outputs num_detections INT32
    [1], boxes FP32 [K,4] (XYXY, original pixels), scores FP32 [K], labels INT32 [K], masks BYTES [K] (COCO
    compressed RLE counts of each mask at 0.5); rows past num_detections are zeros. An unreadable image fails its
    own request only. Prints one line when ready. Needs `pip install "maskrt[serve]"` and nvidia-pytriton (see
    README).
    """
    from maskrt.backends.select import RunnerSpec
    from maskrt.core.errors import MaskrtError
    from maskrt.serving.server import ServeOptions, TritonServer, serve_until_signalled

    if max_queue_delay_us < 0:
        raise MaskrtError(f"--max-queue-delay-us must be >= 0, got {max_queue_delay_us}")
    if max_pixels is not None and max_pixels < 1:
        raise MaskrtError(f"--max-pixels must be >= 1, got {max_pixels}")
    spec = RunnerSpec(model_path, backend=backend, device=device,
                      **checkpoint_kwargs(model_path, arch, num_classes, input_size))
    options = ServeOptions(name=name, address=address, http_port=http_port, grpc_port=grpc_port,
                           metrics_port=metrics_port, max_batch=max_batch, max_queue_delay_us=max_queue_delay_us,
                           max_pixels=max_pixels)
    server = TritonServer(spec, options, log=log_path)
    serve_until_signalled(server, on_ready=lambda line: click.echo(line))
    click.echo("stopped", err=True)
