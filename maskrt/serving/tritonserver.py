"""Where the Triton server maskrt runs comes from, and what it needs around it.

``maskrt serve`` runs the ``tritonserver`` binary that the ``nvidia-pytriton`` wheel ships (Triton 2.51 with the
python backend for nvidia-pytriton 0.7.0; no Docker). The wheel is found without importing it (importing
pytriton needs packages maskrt does not). Three facts about that build shape how it is started:

* the python backend looks for ``triton_python_backend_stub`` beside ``libtriton_python.so``, and the wheel keeps
  one stub per Python version elsewhere: :func:`prepare_backends` lays out a backend folder with links to the
  library, its utilities and the stub for this interpreter;
* the stub links ``libpython3.X.so`` by name and must load the running interpreter's (its ``sysconfig`` LIBDIR),
  not another Python 3.X of the system, or it fails at start ('_thread.RLock' object has no attribute
  '_recursion_count'): :func:`server_environment` puts that folder first on ``LD_LIBRARY_PATH``, with the wheel's
  own libraries;
* the stub reads arrays with numpy 1's layout and its interpreter is isolated (it ignores ``PYTHONPATH``), but its
  ``sys.path`` starts with the working directory: the server runs in :func:`stub_numpy_dir`, a folder holding
  numpy < 2 (``pip install --target``), which the stub then imports first. The model itself runs in a worker
  process under the normal interpreter (:mod:`maskrt.serving.worker`).
"""

from __future__ import annotations

import importlib.util
import os
import sys
import sysconfig
from dataclasses import dataclass
from typing import Optional

from maskrt.core.errors import MaskrtError

PYTRITON_VERSION = "0.7.0"
INSTALL_HINT = f'pip install "maskrt[serve]" && pip install --no-deps nvidia-pytriton=={PYTRITON_VERSION}'


@dataclass
class TritonInstall:
    """The files of a Triton server build: ``binary``, the python backend folder (``python_backend``), the stub
    for this interpreter (``stub``) and the shared libraries they link (``libs``)."""

    binary: str
    python_backend: str
    stub: str
    libs: str
    version: Optional[str] = None  # the nvidia-pytriton version


def find_tritonserver() -> TritonInstall:
    """The ``tritonserver`` of the installed nvidia-pytriton wheel; MaskrtError naming the install command when
    it (or the stub for this Python) is missing."""
    spec = importlib.util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise MaskrtError(f"maskrt serve needs the tritonserver that nvidia-pytriton ships: {INSTALL_HINT}")
    root = list(spec.submodule_search_locations)[0]
    base = os.path.join(root, "tritonserver")
    binary = os.path.join(base, "bin", "tritonserver")
    python_backend = os.path.join(base, "backends", "python")
    pyver = f"{sys.version_info[0]}.{sys.version_info[1]}"
    stub = os.path.join(base, "python_backend_stubs", pyver, "triton_python_backend_stub")
    libs = os.path.join(os.path.dirname(root), "nvidia_pytriton.libs")
    for path, what in ((binary, "tritonserver binary"), (os.path.join(python_backend, "libtriton_python.so"),
                                                          "python backend"), (stub, f"python backend stub for Python {pyver}")):
        if not os.path.isfile(path):
            raise MaskrtError(f"the nvidia-pytriton install has no {what} ({path}); reinstall it: {INSTALL_HINT}")
    from maskrt.core.environment import package_version

    return TritonInstall(binary, python_backend, stub, libs, package_version("nvidia-pytriton"))


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "maskrt")


def stub_numpy_dir() -> str:
    """The folder holding numpy < 2 for the python backend's stub (``$XDG_CACHE_HOME/maskrt/triton-stub``)."""
    return os.path.join(cache_dir(), "triton-stub")


def stub_numpy_hint() -> str:
    return f'pip install --target {stub_numpy_dir()} "numpy<2"'


def check_stub_numpy() -> str:
    """The stub's numpy folder, checked to hold numpy 1.x; MaskrtError naming the install command otherwise."""
    folder = stub_numpy_dir()
    init = os.path.join(folder, "numpy", "version.py")
    version = None
    if os.path.isfile(init):
        with open(init, encoding="utf-8") as f:
            for line in f:
                if line.startswith(("version =", "version: str =", "__version__ =")):
                    version = line.split("=", 1)[1].strip().strip("'\"")
                    break
    if version is None or not version.startswith("1."):
        found = f" (found numpy {version})" if version else ""
        raise MaskrtError(f"Triton's python backend needs numpy<2 in its own folder{found}: {stub_numpy_hint()}")
    return folder


def prepare_backends(install: TritonInstall, folder: str) -> str:
    """A backend folder for the server (``folder/backends``) whose python backend has this interpreter's stub
    beside it (links into the wheel: nothing is copied)."""
    target = os.path.join(folder, "backends", "python")
    os.makedirs(target, exist_ok=True)
    for name in sorted(os.listdir(install.python_backend)):
        if name.endswith((".so", ".py")):
            os.symlink(os.path.join(install.python_backend, name), os.path.join(target, name))
    os.symlink(install.stub, os.path.join(target, "triton_python_backend_stub"))
    return os.path.dirname(target)


def server_environment(install: TritonInstall, base: Optional[dict] = None) -> dict:
    """The server's environment: ``LD_LIBRARY_PATH`` starting with this interpreter's libpython folder and the
    wheel's libraries."""
    env = dict(os.environ if base is None else base)
    first = [p for p in (sysconfig.get_config_var("LIBDIR"), install.libs) if p]
    rest = [p for p in env.get("LD_LIBRARY_PATH", "").split(os.pathsep) if p and p not in first]
    env["LD_LIBRARY_PATH"] = os.pathsep.join(first + rest)
    return env
