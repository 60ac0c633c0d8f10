"""What this machine is: CPU, GPUs, driver, library versions, and file hashes.

The one collector of these facts: reports record :func:`environment`, ``maskrt env`` builds on it. It reads,
never installs; versions come from package metadata, so torch is imported only to ask about CUDA devices.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
from importlib import metadata
from typing import Optional


def package_version(name: str) -> Optional[str]:
    """The installed version of a distribution, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def nvidia_driver() -> Optional[str]:
    """The NVIDIA driver version from nvidia-smi, or None where there is none."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    first = out.stdout.strip().splitlines()
    return first[0].strip() if out.returncode == 0 and first else None


def gpu_info() -> list[dict]:
    """Name, compute capability and memory of each CUDA device torch sees (empty without CUDA)."""
    try:
        import torch
    except ImportError:
        return []
    if not torch.cuda.is_available():
        return []
    gpus = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        gpus.append({"index": i, "name": p.name, "compute_capability": f"{p.major}.{p.minor}",
                     "memory_gb": round(p.total_memory / 2**30, 1)})
    return gpus


def cuda_device(device: Optional[str] = None) -> dict:
    """Index, name and compute capability of the CUDA device torch uses (``device`` "cuda:N", or the current one);
    MaskrtError without one."""
    from maskrt.core.errors import MaskrtError

    try:
        import torch
    except ImportError:
        raise MaskrtError("this needs an NVIDIA GPU and a CUDA build of torch: torch is not installed") from None
    if not torch.cuda.is_available():
        raise MaskrtError("this needs an NVIDIA GPU: torch sees no CUDA device (check the driver, or install a CUDA "
                          "build of torch)")
    index = torch.device(device).index if device and ":" in str(device) else torch.cuda.current_device()
    p = torch.cuda.get_device_properties(index)
    return {"index": index, "name": p.name, "compute_capability": f"{p.major}.{p.minor}"}


def onnxruntime_providers() -> list[str]:
    try:
        import onnxruntime
    except ImportError:
        return []
    return list(onnxruntime.get_available_providers())


def tensorrt_package() -> Optional[str]:
    """The installed TensorRT wheel's version (any of its package names), or None."""
    return package_version("tensorrt") or package_version("tensorrt-cu12") or package_version("tensorrt-cu13")


def torch_cuda_version() -> Optional[str]:
    try:
        import torch
    except ImportError:
        return None
    return torch.version.cuda


def torch_settings() -> Optional[dict]:
    """The PyTorch settings that change CUDA results or speed: TF32 for matmuls and convolutions (on by default for
    cuDNN convolutions: fp32 convs then round their inputs to 10 mantissa bits), cudnn.benchmark (autotuned
    algorithms), deterministic algorithms. None without torch."""
    try:
        import torch
    except ImportError:
        return None
    return {
        "matmul_allow_tf32": bool(torch.backends.cuda.matmul.allow_tf32),
        "cudnn_allow_tf32": bool(torch.backends.cudnn.allow_tf32),
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
        "deterministic_algorithms": bool(torch.are_deterministic_algorithms_enabled()),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
    }


def environment() -> dict:
    """The environment block of a report (and the base of ``maskrt env``)."""
    cuda = torch_cuda_version()
    gpus = gpu_info()
    return {
        "os": platform.platform(),
        "python": platform.python_version(),
        "cpu": cpu_model(),
        "cpu_cores": usable_cores(),
        "gpus": gpus,
        "nvidia_driver": nvidia_driver() if gpus else None,
        "torch": package_version("torch"),
        "torch_cuda": cuda,
        "torch_settings": torch_settings(),
        "onnxruntime": package_version("onnxruntime") or package_version("onnxruntime-gpu"),
        "onnxruntime_providers": onnxruntime_providers(),
        "tensorrt": tensorrt_package(),
        "maskrt": package_version("maskrt"),
    }


def file_sha256(path: str, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            block = f.read(chunk)
            if not block:
                break
            h.update(block)
    return h.hexdigest()
