"""Where maskrt looks for its plugin libraries, and ctypes calls into the fused multi-level RoI Align.

Libraries are searched, in order, in the folders of ``MASKRT_PLUGIN_PATH`` (``os.pathsep``-separated), in the
per-user cache that ``maskrt plugins build`` writes to (``$XDG_CACHE_HOME/maskrt/plugins``, by default
``~/.cache/maskrt/plugins``) and in ``maskrt/plugins/lib`` inside the package. A missing library is a
:class:`~maskrt.core.errors.MaskrtError` whose one line says how to build it.

:func:`multilevel_roi_align_host` runs the host (CPU) twin of the CUDA kernel on torch tensors and
:func:`multilevel_roi_align_cuda` the kernel itself on CUDA tensors; both have the arguments and the result of
:func:`maskrt.ops.poolers.multilevel_roi_align` with explicit ``scales``.
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from collections.abc import Sequence

from maskrt.core.errors import MaskrtError, one_line
from maskrt.plugins import spec

ENV_PATH = "MASKRT_PLUGIN_PATH"
BUILD_HINT = "build it with `maskrt plugins build` (or point MASKRT_PLUGIN_PATH at a folder that has it)"

_LOCK = threading.Lock()
_LOADED: dict[str, ctypes.CDLL] = {}


class PluginStatusError(MaskrtError):
    """A launcher refused its arguments; ``status`` is the C status code (see :data:`maskrt.plugins.spec.STATUS`)."""

    def __init__(self, message: str, status: int):
        super().__init__(message)
        self.status = status


def cache_dir() -> str:
    """The per-user folder that :func:`maskrt.plugins.build.build` installs libraries into by default."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "maskrt", "plugins")


def package_dir() -> str:
    """``maskrt/plugins/lib`` in the installed package (for distributions that ship prebuilt libraries)."""
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "lib")


def search_paths() -> list[str]:
    """The folders searched for plugin libraries, in order (folders that do not exist are listed too)."""
    paths = [p for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
    paths += [cache_dir(), package_dir()]
    out: list[str] = []
    for p in paths:
        p = os.path.abspath(os.path.expanduser(p))
        if p not in out:
            out.append(p)
    return out


def library_filename(name: str) -> str:
    """``libNAME.so`` (Linux), ``libNAME.dylib`` (macOS) or ``NAME.dll`` (Windows)."""
    if sys.platform == "win32":
        return f"{name}.dll"
    if sys.platform == "darwin":
        return f"lib{name}.dylib"
    return f"lib{name}.so"


def find_library(name: str) -> str:
    """Absolute path of library ``name`` (e.g. ``"maskrt_mlra_host"``) in the first search path that has it."""
    filename = library_filename(name)
    for folder in search_paths():
        path = os.path.join(folder, filename)
        if os.path.isfile(path):
            return path
    raise MaskrtError(f"plugin library {filename} not found in {os.pathsep.join(search_paths())}: {BUILD_HINT}")


def describe_paths() -> list[str]:
    """Lines for ``maskrt plugins path``: every search path, then where each library was found (or not)."""
    lines = [f"search path: {p}{'' if os.path.isdir(p) else ' (missing)'}" for p in search_paths()]
    for name in (spec.HOST_LIBRARY, spec.KERNEL_LIBRARY, spec.TENSORRT_LIBRARY):
        try:
            lines.append(f"{library_filename(name)}: {find_library(name)}")
        except MaskrtError:
            lines.append(f"{library_filename(name)}: not built")
    return lines


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    i32, i64p, vp, f32 = ctypes.c_int32, ctypes.POINTER(ctypes.c_int64), ctypes.c_void_p, ctypes.c_float
    common = [i32, i32, i32, ctypes.POINTER(ctypes.c_void_p), i64p, ctypes.POINTER(f32), vp, i64p, vp, i64p,
              i32, i32, i32, f32, i32]
    lib.maskrt_mlra_abi_version.restype = i32
    lib.maskrt_mlra_abi_version.argtypes = []
    lib.maskrt_mlra_status_string.restype = ctypes.c_char_p
    lib.maskrt_mlra_status_string.argtypes = [i32]
    lib.maskrt_mlra_has_cuda.restype = i32
    lib.maskrt_mlra_has_cuda.argtypes = []
    lib.maskrt_mlra_forward_host.restype = i32
    lib.maskrt_mlra_forward_host.argtypes = common
    lib.maskrt_mlra_forward_cuda.restype = i32
    lib.maskrt_mlra_forward_cuda.argtypes = common + [vp]
    version = lib.maskrt_mlra_abi_version()
    if version != spec.ABI_VERSION:
        raise MaskrtError(
            f"plugin library {lib._name} has ABI version {version}, this maskrt needs {spec.ABI_VERSION}: rebuild it "
            "with `maskrt plugins build`"
        )
    return lib


def load_shared_library(path: str) -> ctypes.CDLL:
    """Open a shared library once per process (the one loader of maskrt's native libraries); MaskrtError with the
    dynamic loader's reason when it cannot be opened."""
    path = os.path.abspath(path)
    with _LOCK:
        lib = _LOADED.get(path)
        if lib is None:
            if not os.path.isfile(path):
                raise MaskrtError(f"plugin library {path}: no such file; {BUILD_HINT}")
            try:
                lib = ctypes.CDLL(path)
            except OSError as e:
                raise MaskrtError(f"cannot load plugin library {path}: {one_line(e)}; {BUILD_HINT}") from None
            _LOADED[path] = lib
        return lib


def load_library(name: str, path: str | None = None) -> ctypes.CDLL:
    """The kernel library ``name`` (or the file ``path``), loaded once, with its C functions declared."""
    lib = load_shared_library(path or find_library(name))
    if not getattr(lib, "_maskrt_declared", False):
        _declare(lib)
        lib._maskrt_declared = True
    return lib


def tensorrt_plugin_library(explicit: str | None = None, needed: bool = True, who: str = "the model") -> str | None:
    """The TensorRT plugin library to load: ``explicit`` (which must exist), else the one on the search path when
    ``needed``, else None. The one place that decides which plugin library a build or an engine uses."""
    if explicit:
        if not os.path.isfile(explicit):
            raise MaskrtError(f"plugin library {explicit}: no such file")
        return os.path.abspath(explicit)
    if not needed:
        return None
    try:
        return find_library(spec.TENSORRT_LIBRARY)
    except MaskrtError as e:
        raise MaskrtError(f"{who}: {e}") from None


def host_library(path: str | None = None) -> ctypes.CDLL:
    """The host twin: ``maskrt_mlra_host`` (needs no CUDA), else the full ``maskrt_mlra``."""
    if path:
        return load_library(spec.HOST_LIBRARY, path)
    try:
        return load_library(spec.HOST_LIBRARY)
    except MaskrtError as first:
        try:
            return load_library(spec.KERNEL_LIBRARY)
        except MaskrtError:
            raise first from None


def host_available() -> bool:
    """True when a library with the host twin can be found and loaded."""
    try:
        host_library()
        return True
    except MaskrtError:
        return False


def _dtype_code(dtype, what: str) -> int:
    import torch

    if dtype == torch.float32:
        return spec.FLOAT32
    if dtype == torch.float16:
        return spec.FLOAT16
    raise MaskrtError(f"{what} must be float32 or float16, got {dtype}")


def _mode_code(mode: str) -> int:
    if mode not in spec.MODES:
        raise MaskrtError(f"mode must be 'avg' or 'max', got {mode!r}")
    return spec.MODES[mode]


def _prepare(features, rois, scales, output_size, device):
    """Contiguous tensors and the int64/float/pointer arrays of one launcher call."""
    import torch

    from maskrt.ops.roi_align import convert_boxes_to_rois, output_pair

    maps = [f.contiguous() for f in features]
    if not maps:
        raise MaskrtError("multilevel_roi_align needs at least one feature map")
    if len(maps) > spec.MAX_LEVELS:
        raise MaskrtError(f"the plugin takes at most {spec.MAX_LEVELS} feature maps, got {len(maps)}")
    if any(f.dim() != 4 for f in maps):
        raise MaskrtError(f"feature maps must be (N, C, H, W), got {[tuple(f.shape) for f in maps]}")
    if len({f.dtype for f in maps}) != 1:
        raise MaskrtError(f"feature maps must share one dtype, got {sorted({str(f.dtype) for f in maps})}")
    if any(f.device.type != device for f in maps):
        raise MaskrtError(f"feature maps must be {device} tensors")
    scales = [float(s) for s in scales]
    if len(scales) != len(maps):
        raise MaskrtError(f"got {len(scales)} scales for {len(maps)} feature maps")
    rois = convert_boxes_to_rois(rois, maps[0]).contiguous()
    if rois.device.type != device:
        raise MaskrtError(f"rois must be a {device} tensor")
    ph, pw = output_pair(output_size)
    feature_dtype = _dtype_code(maps[0].dtype, "feature maps")
    roi_dtype = _dtype_code(rois.dtype, "rois")
    k = rois.shape[0] if rois.dim() == 2 else 0
    channels = maps[0].shape[1]
    output = torch.empty((k, channels, max(ph, 0), max(pw, 0)), dtype=maps[0].dtype, device=maps[0].device)
    n = len(maps)
    ptrs = (ctypes.c_void_p * n)(*[f.data_ptr() or None for f in maps])
    shapes = (ctypes.c_int64 * (4 * n))(*[int(d) for f in maps for d in f.shape])
    scale_arr = (ctypes.c_float * n)(*scales)
    roi_shape = (ctypes.c_int64 * 2)(*([int(d) for d in rois.shape] if rois.dim() == 2 else [0, int(rois.shape[-1])]))
    out_shape = (ctypes.c_int64 * 4)(k, channels, ph, pw)
    return maps, rois, output, (feature_dtype, roi_dtype, n, ptrs, shapes, scale_arr, rois.data_ptr() or None,
                                 roi_shape, output.data_ptr() or None, out_shape)


def _check(lib: ctypes.CDLL, status: int, what: str) -> None:
    if status != spec.OK:
        text = lib.maskrt_mlra_status_string(status).decode()
        raise PluginStatusError(f"{what} refused its arguments: {text} (status {status})", status)


def multilevel_roi_align_host(
    features: Sequence,
    rois,
    scales: Sequence[float],
    output_size,
    sampling_ratio: int = 2,
    aligned: bool = False,
    mode: str = "avg",
    canonical_scale: float = 224,
    canonical_level: int = 4,
    *,
    library: str | None = None,
):
    """Multi-level RoI Align in the host twin of the CUDA kernel (C++ through ctypes), on CPU tensors.

    Args:
        features: feature maps, finest first, each (N, C, Hi, Wi), all float32 or all float16.
        rois: (K, 5) ``[batch_index, x1, y1, x2, y2]`` (float32, or float16 with float16 maps) or a list of
            per-image (Ki, 4) boxes.
        scales: feature pixels per image pixel of each map.
        output_size: int or (PH, PW).
        library: path of the library to use (default: found on :func:`search_paths`).

    Returns:
        (K, C, PH, PW) in the maps' dtype, equal to :func:`maskrt.ops.poolers.multilevel_roi_align`.

    Raises:
        PluginStatusError: the library refused the arguments (its ``status`` says why).
    """
    lib = host_library(library)
    _maps, _rois, output, args = _prepare(features, rois, scales, output_size, "cpu")
    status = lib.maskrt_mlra_forward_host(*args, int(sampling_ratio), int(bool(aligned)), _mode_code(mode),
                                          float(canonical_scale), int(canonical_level))
    _check(lib, status, "maskrt_mlra_forward_host")
    return output


def multilevel_roi_align_cuda(
    features: Sequence,
    rois,
    scales: Sequence[float],
    output_size,
    sampling_ratio: int = 2,
    aligned: bool = False,
    mode: str = "avg",
    canonical_scale: float = 224,
    canonical_level: int = 4,
    *,
    library: str | None = None,
):
    """As :func:`multilevel_roi_align_host`, on CUDA tensors with the CUDA kernel, on torch's current stream."""
    import torch

    lib = load_library(spec.KERNEL_LIBRARY, library)
    if not lib.maskrt_mlra_has_cuda():
        raise MaskrtError(f"{lib._name} was built without CUDA: rebuild with `maskrt plugins build` on a machine with nvcc")
    maps, _rois, output, args = _prepare(features, rois, scales, output_size, "cuda")
    with torch.cuda.device(maps[0].device):
        stream = torch.cuda.current_stream().cuda_stream
        status = lib.maskrt_mlra_forward_cuda(*args, int(sampling_ratio), int(bool(aligned)), _mode_code(mode),
                                              float(canonical_scale), int(canonical_level), stream)
    _check(lib, status, "maskrt_mlra_forward_cuda")
    return output
