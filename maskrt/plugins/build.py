"""Build the plugin libraries with CMake (what ``maskrt plugins build`` runs).

:func:`build` configures ``maskrt/plugins/CMakeLists.txt`` in a build folder outside the source tree (by default
``<cache>/build`` under :func:`maskrt.plugins.library.cache_dir`), builds it, and puts the libraries where
:func:`maskrt.plugins.library.find_library` looks (by default the cache folder itself).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field

from maskrt.core.errors import MaskrtError
from maskrt.plugins import spec
from maskrt.plugins.library import cache_dir, library_filename

SOURCE_DIR = os.path.dirname(os.path.abspath(__file__))
#: Turing (sm_75: T4, RTX 20xx) to Blackwell: what the kernel is built for when no GPU is present, as far as the
#: installed nvcc offers them (nvcc 13 accepts all of these; it dropped Volta).
DEFAULT_CUDA_ARCHS = ("75", "80", "86", "89", "90", "100", "120")
DRIVER = "maskrt_mlra_run"


@dataclass
class BuildResult:
    """What :func:`build` produced."""

    build_dir: str
    output_dir: str
    libraries: dict[str, str] = field(default_factory=dict)  # base name -> path, for those built
    cuda: bool = False
    tensorrt: bool = False
    asan: bool = False
    cuda_archs: tuple[str, ...] = ()
    driver: str | None = None
    log: str = ""

    def summary(self) -> list[str]:
        """Lines for the CLI."""
        lines = [f"output: {self.output_dir}"]
        for name in (spec.HOST_LIBRARY, spec.KERNEL_LIBRARY, spec.TENSORRT_LIBRARY):
            lines.append(f"{library_filename(name)}: {self.libraries.get(name, 'not built')}")
        if self.cuda:
            lines.append(f"CUDA architectures: {';'.join(self.cuda_archs)}")
        if not self.tensorrt:
            lines.append("TensorRT plugin: not built (TensorRT headers and libnvinfer not found; set TENSORRT_ROOT)"
                         if self.cuda else "TensorRT plugin: not built (needs CUDA)")
        return lines


def find_nvcc() -> str | None:
    """Path of nvcc: on PATH, in $CUDA_HOME/bin or /usr/local/cuda/bin; None when there is none."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and os.path.isfile(os.path.join(root, "bin", "nvcc")):
            return os.path.join(root, "bin", "nvcc")
    return None


def find_cmake() -> str:
    found = shutil.which("cmake")
    if not found:
        raise MaskrtError("cmake is not installed: install cmake >= 3.18 (apt install cmake, or pip install cmake)")
    return found


def nvcc_architectures(nvcc: str | None) -> tuple[str, ...] | None:
    """The real architectures ``nvcc --list-gpu-code`` names (("75", "80", ...)), or None when it cannot say."""
    if not nvcc:
        return None
    try:
        out = subprocess.run([nvcc, "--list-gpu-code"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    found = tuple(dict.fromkeys(w.removeprefix("sm_") for w in out.stdout.split() if w.startswith("sm_")))
    return found if out.returncode == 0 and found else None


def local_gpu_architecture() -> str | None:
    """The compute capability of the first CUDA device torch sees, as CMake writes it ("86"), or None."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return f"{major}{minor}"
    except Exception:  # no torch, a broken driver: no local GPU to build for
        return None
    return None


def default_cuda_archs(nvcc: str | None) -> tuple[str, ...]:
    """The local GPU's architecture when there is one; otherwise :data:`DEFAULT_CUDA_ARCHS` limited to those the
    installed nvcc can build for."""
    accepted = nvcc_architectures(nvcc)
    local = local_gpu_architecture()
    if local is not None:
        if accepted is not None and local not in accepted:
            raise MaskrtError(f"this GPU is sm_{local}, which nvcc at {nvcc} cannot build for (it offers "
                              f"{', '.join('sm_' + a for a in accepted)}): install a CUDA toolkit that supports it")
        return (local,)
    if accepted is None:
        return DEFAULT_CUDA_ARCHS
    return tuple(a for a in DEFAULT_CUDA_ARCHS if a in accepted) or accepted


def parse_cuda_archs(cuda_archs: str | Sequence[str | int] | None) -> tuple[str, ...]:
    """'80;90', '80,90', ['80', 90] or 'sm_80' -> ('80', '90'); None -> :data:`DEFAULT_CUDA_ARCHS`."""
    if cuda_archs is None:
        return DEFAULT_CUDA_ARCHS
    items = cuda_archs.replace(",", ";").split(";") if isinstance(cuda_archs, str) else [str(a) for a in cuda_archs]
    out = []
    for item in items:
        item = item.strip().lower().removeprefix("sm_").removeprefix("compute_")
        if not item:
            continue
        digits = item.removesuffix("-real").removesuffix("-virtual").removesuffix("a").removesuffix("f")
        if not digits.isdigit():
            raise MaskrtError(f"--cuda-arch must be numbers like 80 or 90 (CMake CUDA_ARCHITECTURES), got {item!r}")
        out.append(item)
    if not out:
        raise MaskrtError("--cuda-arch is empty")
    return tuple(out)


def tensorrt_library_dir() -> str | None:
    """Folder of libnvinfer from the ``tensorrt`` pip packages (``tensorrt_libs``), if installed."""
    import importlib.util

    for name in ("tensorrt_libs", "tensorrt"):
        found = importlib.util.find_spec(name)
        if found is not None and found.submodule_search_locations:
            for folder in found.submodule_search_locations:
                if any(f.startswith("libnvinfer.so") for f in os.listdir(folder)):
                    return folder
    return None


def tensorrt_runtime_major() -> str | None:
    """Major version of the installed ``tensorrt`` Python package (the runtime the plugin is loaded into), read
    from its distribution metadata without importing it; None when it is not installed."""
    from importlib import metadata

    for dist in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12"):
        try:
            return metadata.version(dist).split(".")[0]
        except metadata.PackageNotFoundError:
            continue
    return None


def build(
    cuda_archs: str | Sequence[str | int] | None = None,
    build_dir: str | os.PathLike | None = None,
    with_cuda: bool | None = None,
    *,
    output_dir: str | os.PathLike | None = None,
    with_tensorrt: bool = True,
    tensorrt_root: str | os.PathLike | None = None,
    asan: bool = False,
    jobs: int = 2,
    build_type: str = "Release",
    verbose: bool = False,
) -> BuildResult:
    """Configure and build the plugin libraries; return where they went.

    Args:
        cuda_archs: CUDA architectures (default: the local GPU's; without one, Turing to Blackwell as far as
            nvcc offers them: :func:`default_cuda_archs`).
        build_dir: CMake build folder (default ``<cache>/build``, or ``<cache>/build-asan`` with ``asan``).
        with_cuda: build the CUDA kernel (and the TensorRT plugin); None: when nvcc is found.
        output_dir: where the libraries go (default: the cache folder that :func:`find_library` searches).
        with_tensorrt: build the TensorRT plugin when TensorRT headers and libnvinfer are found.
        tensorrt_root: TensorRT installation (default: $TENSORRT_ROOT, system folders, the pip package's libs).
        asan: build the host twin and its driver with AddressSanitizer (for tests; not for use from Python).
        jobs: parallel compile jobs.

    Raises:
        MaskrtError: cmake or (with ``with_cuda=True``) nvcc missing, or the build failed (last lines of the log).
    """
    cmake = find_cmake()
    nvcc = find_nvcc()
    archs = parse_cuda_archs(cuda_archs) if cuda_archs is not None else default_cuda_archs(nvcc)
    if with_cuda is None:
        with_cuda = nvcc is not None
    if with_cuda and nvcc is None:
        raise MaskrtError("nvcc not found (PATH, $CUDA_HOME/bin, /usr/local/cuda/bin): install the CUDA toolkit, or "
                          "build the host twin only (with_cuda=False, `maskrt plugins build --no-cuda`)")
    build_dir = os.path.abspath(os.fspath(build_dir or os.path.join(cache_dir(), "build-asan" if asan else "build")))
    output_dir = os.path.abspath(os.fspath(output_dir or (os.path.join(build_dir, "lib") if asan else cache_dir())))
    os.makedirs(build_dir, exist_ok=True)
    os.makedirs(output_dir, exist_ok=True)

    args = [
        cmake, "-S", SOURCE_DIR, "-B", build_dir, f"-DCMAKE_BUILD_TYPE={build_type}",
        f"-DMASKRT_OUTPUT_DIR={output_dir}", f"-DMASKRT_WITH_CUDA={'ON' if with_cuda else 'OFF'}",
        f"-DMASKRT_CUDA_ARCHITECTURES={';'.join(archs)}", f"-DMASKRT_WITH_TENSORRT={'ON' if with_tensorrt else 'OFF'}",
        f"-DMASKRT_HOST_ASAN={'ON' if asan else 'OFF'}",
    ]
    if with_cuda:
        args.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
    root = os.fspath(tensorrt_root) if tensorrt_root else os.environ.get("TENSORRT_ROOT")
    if root:
        args.append(f"-DTENSORRT_ROOT={root}")
    libdir = tensorrt_library_dir()
    if with_tensorrt and libdir:
        args.append(f"-DTENSORRT_LIBRARY_DIR={libdir}")
    runtime_major = tensorrt_runtime_major()
    if with_tensorrt and runtime_major:
        args.append(f"-DMASKRT_TENSORRT_MAJOR={runtime_major}")
    log = _run(args, verbose, "configure")
    log += _run([cmake, "--build", build_dir, "--parallel", str(max(1, int(jobs)))], verbose, "build")

    result = BuildResult(build_dir=build_dir, output_dir=output_dir, asan=asan, cuda_archs=archs if with_cuda else (),
                         log=log)
    # Only what this configuration built (the output folder may hold libraries of an earlier build).
    built_trt = "TensorRT plugin ON" in log
    for name, wanted in ((spec.HOST_LIBRARY, True), (spec.KERNEL_LIBRARY, with_cuda), (spec.TENSORRT_LIBRARY, built_trt)):
        path = os.path.join(output_dir, library_filename(name))
        if wanted and os.path.isfile(path):
            result.libraries[name] = path
    driver = os.path.join(output_dir, DRIVER + (".exe" if sys.platform == "win32" else ""))
    result.driver = driver if os.path.isfile(driver) else None
    result.cuda = bool(with_cuda) and spec.KERNEL_LIBRARY in result.libraries
    result.tensorrt = spec.TENSORRT_LIBRARY in result.libraries
    return result


def _run(args: list[str], verbose: bool, step: str) -> str:
    proc = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    if verbose:
        print(proc.stdout, end="")
    if proc.returncode != 0:
        tail = "\n".join(proc.stdout.strip().splitlines()[-15:])
        raise MaskrtError(f"plugin {step} failed (cmake exit {proc.returncode}):\n{tail}")
    return proc.stdout
