"""``maskrt triton``: a model repository for stock Triton Inference Servers (thin over maskrt.serving.repository)."""

from __future__ import annotations

import click

from maskrt.cli.options import checkpoint_kwargs, model_options


@click.command("triton", short_help="Write a Triton model repository (ensemble, Kubernetes manifest).", epilog="""\b
Examples:
  maskrt triton model.engine --out repo/                     # tensorrt_plan core model
  maskrt triton shapes.onnx --out repo/ --max-batch 8 --instances 2
  maskrt triton maskrt/model/weights/shapes.safetensors --arch shapes --platform python --out repo/""")
@click.argument("model_path", metavar="MODEL", type=click.Path(dir_okay=False))
@model_options
@click.option("--out", "out_dir", type=click.Path(file_okay=False), required=True, help="New folder for the repository.")
@click.option("--name", default="maskrt", show_default=True, help="Model name clients ask for (the ensemble).")
@click.option("--max-batch", type=int, default=8, show_default=True, help="max_batch_size and the dynamic batcher's "
              "largest batch.")
@click.option("--instances", type=int, default=1, show_default=True, help="Instances of each model (instance_group).")
@click.option("--platform", type=click.Choice(["tensorrt", "onnxruntime", "python"]), default=None,
              help="Core model: tensorrt (an engine), onnxruntime (an export), python (a maskrt runner; any model). "
                   "Default from MODEL.")
@click.option("--plugins", "plugin_library", type=click.Path(dir_okay=False),
              help="TensorRT plugin library to put into plugins/ (default: the one `maskrt plugins build` made).")
@click.option("--max-queue-delay-us", type=int, default=2000, show_default=True)
def triton_cmd(model_path, arch, num_classes, input_size, out_dir, name, max_batch, instances, platform, plugin_library,
               max_queue_delay_us):
    """Write a Triton model repository for MODEL into --out: an ensemble NAME (encoded image in; boxes, scores,
    labels, RLE masks out, as `maskrt serve` gives them) of a python pre-processing model, the core model and a
    python post-processing model, with dynamic batching and instance groups; a README with the docker run line;
    kubernetes/NAME.yaml (Deployment, Service, HorizontalPodAutoscaler); plugins/ for TensorRT-target engines.
    """
    from maskrt.backends.select import RunnerSpec
    from maskrt.core.errors import MaskrtError
    from maskrt.serving.repository import RepositoryOptions, write_repository

    if max_queue_delay_us < 0:
        raise MaskrtError(f"--max-queue-delay-us must be >= 0, got {max_queue_delay_us}")
    spec = RunnerSpec(model_path, **checkpoint_kwargs(model_path, arch, num_classes, input_size))
    options = RepositoryOptions(name=name, platform=platform, max_batch=max_batch, instances=instances,
                                max_queue_delay_us=max_queue_delay_us, plugin_library=plugin_library)
    repo = write_repository(spec, out_dir, options)
    for note in repo.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {out_dir}: ensemble {repo.name!r} ({repo.platform} core, max batch {options.max_batch}, "
               f"{instances} instance(s)); {len(repo.configs)} configs, README.md, kubernetes/{name}.yaml")
