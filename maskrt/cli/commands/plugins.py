"""``maskrt plugins build`` and ``maskrt plugins path``: the fused multi-level RoIAlign libraries."""

from __future__ import annotations

import click


@click.group("plugins", short_help="Build and locate the native plugin libraries.")
def plugins_group() -> None:
    """Build and locate maskrt's native libraries (CUDA kernel, host twin, TensorRT plugin)."""


@plugins_group.command("build", short_help="Build the kernel, host twin and TensorRT plugin.", epilog="""\b
Examples:
  maskrt plugins build
  maskrt plugins build --cuda-arch "75;86;90" --tensorrt-root /opt/tensorrt
  maskrt plugins build --no-cuda""")
@click.option("--cuda-arch", "cuda_archs", default=None, help='CUDA architectures, e.g. "75;86" (default: the local GPU\'s; without one, Turing to Blackwell as far as nvcc '
              'offers them).')
@click.option("--no-cuda", is_flag=True, help="Build the host (CPU) twin only.")
@click.option("--build-dir", type=click.Path(file_okay=False), help="CMake build folder (default: in the cache).")
@click.option("--output-dir", type=click.Path(file_okay=False), help="Where the libraries go (default: the cache "
              "folder maskrt searches; see `maskrt plugins path`).")
@click.option("--tensorrt-root", type=click.Path(file_okay=False), help="TensorRT installation (default: "
              "$TENSORRT_ROOT, system folders, the tensorrt pip package).")
@click.option("--jobs", type=int, default=2, show_default=True, help="Parallel compile jobs.")
@click.option("--verbose", is_flag=True, help="Show cmake's output.")
def plugins_build_cmd(cuda_archs, no_cuda, build_dir, output_dir, tensorrt_root, jobs, verbose):
    """Build the kernel library (CUDA + host twin) and, where TensorRT is found, the TensorRT plugin."""
    import os
    import warnings

    from maskrt.core.errors import MaskrtError, MaskrtWarning
    from maskrt.core.fileio import check_output_folder
    from maskrt.plugins.build import build

    if jobs < 1:
        raise MaskrtError(f"--jobs must be >= 1, got {jobs}")
    if tensorrt_root is not None and not os.path.isdir(tensorrt_root):
        raise MaskrtError(f"--tensorrt-root {tensorrt_root} is not a folder; give the TensorRT installation (the "
                          "folder holding include/NvInfer.h and lib/), or leave it out to search the usual places")
    if cuda_archs is not None and no_cuda:
        warnings.warn(MaskrtWarning("--cuda-arch is ignored with --no-cuda (only the host twin is built)"), stacklevel=1)
    for option, folder in (("--build-dir", build_dir), ("--output-dir", output_dir)):
        if folder is not None:
            check_output_folder(folder, option)

    result = build(cuda_archs=cuda_archs, build_dir=build_dir, with_cuda=False if no_cuda else None,
                   output_dir=output_dir, tensorrt_root=tensorrt_root, jobs=jobs, verbose=verbose)
    for line in result.summary():
        click.echo(line)


@plugins_group.command("path", short_help="Where the plugin libraries are looked for.", epilog="""\b
Examples:
  maskrt plugins path
  MASKRT_PLUGIN_PATH=/opt/maskrt/lib maskrt plugins path""")
def plugins_path_cmd():
    """Print where maskrt looks for its plugin libraries and which ones it finds."""
    from maskrt.plugins.library import describe_paths

    for line in describe_paths():
        click.echo(line)
