"""``maskrt serve``: a real Triton server here, serving one model through maskrt's runtime.

:func:`write_served_repository` lays out a model repository with one python-backend model (``served.py``) that
hands each dynamic batch to a :mod:`maskrt.serving.worker` process; :class:`TritonServer` starts the
``tritonserver`` of nvidia-pytriton on it (:mod:`maskrt.serving.tritonserver`), waits until the model is ready,
and stops it (SIGTERM, then SIGKILL after a grace period). The server's own log goes to a file in the run's
folder; what a user sees is one line when it is ready, or one line saying why it could not start.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Optional

from maskrt.core.errors import MaskrtError
from maskrt.serving.config import ModelConfig, Tensor, check_model_name
from maskrt.serving.contract import INPUT_NAME, output_specs


@dataclass
class ServeOptions:
    """What ``maskrt serve`` was asked for (ports on ``address``; ``max_batch`` images per model call)."""

    name: str = "maskrt"
    address: str = "127.0.0.1"
    http_port: int = 8000
    grpc_port: int = 8001
    metrics_port: int = 8002
    max_batch: int = 8
    max_queue_delay_us: int = 2000
    max_pixels: Optional[int] = None
    startup_timeout: float = 300.0

    def check(self) -> None:
        check_model_name(self.name, "--name")
        if not 1 <= self.max_batch <= 1024:
            raise MaskrtError(f"--max-batch must be in [1, 1024], got {self.max_batch}")
        ports = {"--http-port": self.http_port, "--grpc-port": self.grpc_port, "--metrics-port": self.metrics_port}
        for option, port in ports.items():
            if not 1 <= port <= 65535:
                raise MaskrtError(f"{option} must be in [1, 65535], got {port}")
        if len(set(ports.values())) < 3:
            raise MaskrtError("--http-port, --grpc-port and --metrics-port must differ")

    @property
    def host(self) -> str:
        """Where a client on this machine reaches the server."""
        return "127.0.0.1" if self.address in ("0.0.0.0", "") else ("[::1]" if self.address == "::" else self.address)


def check_ports(address: str, ports: dict) -> None:
    """MaskrtError (one line) for the first port of ``{option: port}`` that cannot be bound on ``address``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    for option, port in ports.items():
        with socket.socket(family, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as servers bind: a closed port is free
            try:
                s.bind((address, port))
            except OSError as e:
                reason = "is in use" if e.errno in (98, 48) else f"cannot be used ({e.strerror})"
                raise MaskrtError(f"port {port} ({option}) {reason} on {address}: stop what holds it or pass another "
                                  f"{option}") from None


def worker_command(spec, max_batch: int, max_pixels: Optional[int]) -> list[str]:
    """The command that starts :mod:`maskrt.serving.worker` for ``spec`` under this interpreter."""
    cmd = [sys.executable, "-m", "maskrt.serving.worker", "--backend", spec.backend, "--device", spec.device,
           "--max-batch", str(max_batch)]
    if spec.model_path:
        cmd += ["--model", os.path.abspath(spec.model_path)]
    if spec.arch:
        cmd += ["--arch", spec.arch]
    if spec.num_classes is not None:
        cmd += ["--num-classes", str(spec.num_classes)]
    if spec.input_size is not None:
        cmd += ["--input-size", "x".join(str(int(v)) for v in spec.input_size)]
    if max_pixels is not None:
        cmd += ["--max-pixels", str(max_pixels)]
    return cmd


def _maskrt_root() -> str:
    import maskrt

    return os.path.dirname(os.path.dirname(os.path.abspath(maskrt.__file__)))


def served_config(options: ServeOptions, meta, command: list[str], work_dir: str) -> ModelConfig:
    """The config of the one model ``maskrt serve`` runs."""
    k = meta.max_detections
    path = [_maskrt_root()] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return ModelConfig(
        name=options.name, backend="python", max_batch_size=options.max_batch,
        inputs=[Tensor(INPUT_NAME, "TYPE_STRING", [1])],
        outputs=[Tensor(n, t, d) for n, t, d in output_specs(k)],
        instances=1, dynamic_batching=True, max_queue_delay_us=options.max_queue_delay_us,
        parameters={"maskrt_worker_command": json.dumps(command),
                    "maskrt_worker_env": json.dumps({"PYTHONPATH": os.pathsep.join(dict.fromkeys(path))}),
                    "maskrt_worker_cwd": work_dir,
                    "maskrt_max_detections": str(k),
                    "maskrt_class_names": json.dumps(list(meta.class_names)),
                    "maskrt_mask_encoding": "coco-rle-counts"})


def write_served_repository(folder: str, config: ModelConfig) -> str:
    """``folder/models/<name>/{config.pbtxt, 1/model.py, 1/maskrt_wire.py}``; returns the repository path."""
    from maskrt.serving import backend_models, wire

    repo = os.path.join(folder, "models")
    version = os.path.join(repo, config.name, "1")
    os.makedirs(version)
    with open(os.path.join(repo, config.name, "config.pbtxt"), "w", encoding="utf-8") as f:
        f.write(config.to_text())
    shutil.copyfile(os.path.join(os.path.dirname(backend_models.__file__), "served.py"),
                    os.path.join(version, "model.py"))
    shutil.copyfile(wire.__file__, os.path.join(version, "maskrt_wire.py"))
    return repo


class TritonServer:
    """A ``tritonserver`` process serving one maskrt model; a context manager (``stop`` on exit).

    Args:
        spec: the model (:class:`maskrt.backends.select.RunnerSpec`).
        options: :class:`ServeOptions`.
        log: file for the server's log (default: ``tritonserver.log`` in the run's temporary folder, removed
            at stop unless the start failed).
    """

    def __init__(self, spec, options: ServeOptions, log: Optional[str] = None):
        self.spec = spec
        self.options = options
        self.log_path = log
        self.process: Optional[subprocess.Popen] = None
        self.folder: Optional[str] = None
        self.meta = None

    # -- start ---------------------------------------------------------------------------------------------------------
    def start(self) -> None:
        """Check everything that can be checked, start the server and wait until the model is ready; MaskrtError
        (one line) when it cannot start."""
        from maskrt.serving.meta import model_meta
        from maskrt.serving.tritonserver import (
            check_stub_numpy,
            find_tritonserver,
            prepare_backends,
            server_environment,
        )

        o = self.options
        o.check()
        install = find_tritonserver()
        stub_dir = check_stub_numpy()
        self.meta = model_meta(self.spec)
        check_ports(o.address, {"--http-port": o.http_port, "--grpc-port": o.grpc_port, "--metrics-port": o.metrics_port})
        self.folder = tempfile.mkdtemp(prefix="maskrt-serve-")
        config = served_config(o, self.meta, worker_command(self.spec, o.max_batch, o.max_pixels), self.folder)
        repo = write_served_repository(self.folder, config)
        backends = prepare_backends(install, self.folder)
        self.log_path = self.log_path or os.path.join(self.folder, "tritonserver.log")
        cmd = [install.binary, f"--model-repository={repo}", f"--backend-directory={backends}",
               f"--http-address={o.address}", f"--http-port={o.http_port}",
               f"--grpc-address={o.address}", f"--grpc-port={o.grpc_port}",
               f"--metrics-address={o.address}", f"--metrics-port={o.metrics_port}",
               "--allow-metrics=true", "--allow-gpu-metrics=false", "--exit-timeout-secs=30",
               "--backend-config=python,stub-timeout-seconds=300", "--log-verbose=0"]
        with open(self.log_path, "ab") as log:
            # cwd: the stub's interpreter imports numpy from its working directory first (see tritonserver.py);
            # a session of its own: a Ctrl-C at the terminal reaches maskrt, which stops the server in order.
            self.process = subprocess.Popen(cmd, cwd=stub_dir, env=server_environment(install), stdout=log,
                                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        try:
            self._wait_ready()
        except BaseException as e:  # the log explains a failed start; an interrupted one needs no keeping
            self.stop(keep_log=not isinstance(e, KeyboardInterrupt))
            raise

    def _get(self, path: str, timeout: float = 2.0) -> tuple[int, bytes]:
        url = f"http://{self.options.host}:{self.options.http_port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except (urllib.error.URLError, OSError):
            return 0, b""

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.options.startup_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise MaskrtError(f"tritonserver stopped while starting (exit {self.process.returncode}): "
                                  f"{self.log_error()} (log: {self.log_path})")
            status, _ = self._get(f"/v2/models/{self.options.name}/ready")
            if status == 200:
                return
            time.sleep(0.25)
        raise MaskrtError(f"the model was not ready after {self.options.startup_timeout:.0f} s (log: {self.log_path})")

    def log_error(self) -> str:
        """The most telling error line of the server's log (a model that failed to load, else the last error)."""
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                lines = [line.strip() for line in f]
        except OSError:
            return "no log"
        for needle in ("maskrt worker:", "failed to load", "error:", "Error"):
            found = [line for line in lines if needle in line]
            if found:
                line = found[-1]
                return line.split('] "', 1)[-1].rstrip('"') if '] "' in line else line
        return lines[-1] if lines else "empty log"

    # -- running -------------------------------------------------------------------------------------------------------
    @property
    def http_url(self) -> str:
        return f"{self.options.host}:{self.options.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"{self.options.host}:{self.options.grpc_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://{self.options.host}:{self.options.metrics_port}/metrics"

    def ready_line(self) -> str:
        o = self.options
        return (f"ready: model {o.name!r} ({self.spec.name()}, max batch {o.max_batch}) on HTTP {self.http_url}, "
                f"gRPC {self.grpc_url}, metrics {self.metrics_url}")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> Optional[int]:
        return self.process.pid if self.process is not None else None

    # -- stop ----------------------------------------------------------------------------------------------------------
    def stop(self, keep_log: bool = False, grace: float = 45.0) -> Optional[int]:
        """Stop the server (SIGTERM: Triton unloads the model, which stops the worker; SIGKILL to its process
        group after ``grace`` seconds) and remove the run's folder (its log kept when ``keep_log``). Returns the
        server's exit status."""
        code = None
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=grace)
                except subprocess.TimeoutExpired:
                    try:
                        os.killpg(self.process.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                    self.process.wait()
            code = self.process.returncode
        if self.folder and os.path.isdir(self.folder):
            if keep_log and self.log_path and self.log_path.startswith(self.folder + os.sep):
                kept = os.path.join(tempfile.gettempdir(), f"maskrt-serve-{os.getpid()}.log")
                shutil.copyfile(self.log_path, kept)
                self.log_path = kept
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None
        return code

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


def serve_until_signalled(server: TritonServer, on_ready=print) -> int:
    """Start ``server``, call ``on_ready`` with its ready line, and run until SIGINT or SIGTERM (then stop it
    and return 0) or until the server stops by itself (MaskrtError)."""
    stopping = {"signal": None, "starting": True}

    def handle(signum, frame):
        stopping["signal"] = signum
        if stopping["starting"]:  # leave the wait for readiness at once; start() stops what it started
            raise KeyboardInterrupt

    previous = {s: signal.signal(s, handle) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        stopping["starting"] = False
        on_ready(server.ready_line())
        while stopping["signal"] is None:
            if not server.alive():
                raise MaskrtError(f"tritonserver stopped by itself (exit {server.process.returncode}): "
                                  f"{server.log_error()}")
            time.sleep(0.2)
        return 0
    finally:
        server.stop(keep_log=stopping["signal"] is None)
        for s, handler in previous.items():
            signal.signal(s, handler)
