"""Tiny models and fake runners for the profiling tests."""

from __future__ import annotations

from maskrt.backends.base import Runner, TensorSpec
from maskrt.backends.select import RunnerSpec
from maskrt.core.metadata import ModelMeta

TINY_SIZE = (64, 96)
TINY_KWARGS = {"min_size": 64, "max_size": 96, "rpn_pre_nms_top_n_test": 200, "rpn_post_nms_top_n_test": 50,
               "box_detections_per_img": 20}


def tiny_model(seed: int = 0):
    """A small R18-FPN with a confident classifier (random weights otherwise)."""
    from tests.model.helpers import small_model

    return small_model(seed=seed, num_classes=3, **TINY_KWARGS)


def tiny_files(folder, dynamic_batch: bool = True):
    """A tiny checkpoint and its ONNX export in ``folder``; returns (checkpoint, onnx) paths."""
    from safetensors.torch import save_file

    from maskrt.export.onnx_export import to_onnx

    model = tiny_model()
    ckpt = folder / "tiny.safetensors"
    save_file(model.state_dict(), str(ckpt))
    onnx_path = folder / ("tiny_dyn.onnx" if dynamic_batch else "tiny_b1.onnx")
    to_onnx(model, onnx_path, input_size=TINY_SIZE, batch=1, dynamic_batch=dynamic_batch, score_threshold=0.0)
    return ckpt, onnx_path


def tiny_torch_spec(ckpt, **kw) -> RunnerSpec:
    return RunnerSpec(str(ckpt), arch="maskrcnn_resnet18_fpn", num_classes=3, input_size=TINY_SIZE,
                      model_kwargs=dict(TINY_KWARGS), **kw)


class FakeRunner(Runner):
    """Sleeps a fixed time per call and records the order of calls in a shared log."""

    backend = "fake"

    def __init__(self, name: str, log: list, seconds: float = 0.0, fail_at=None, interrupt_at=None):
        super().__init__(name)
        self.log, self.seconds, self.fail_at, self.interrupt_at = log, seconds, fail_at, interrupt_at
        self.calls = 0
        self.meta = ModelMeta(input_size=(32, 32), class_names=("bg", "a"), min_size=32, max_size=32)

    def input_specs(self):
        return {"images": TensorSpec("uint8", (1, 3, 32, 32))}

    def output_specs(self):
        return {}

    def _execute_impl(self, feeds):
        import time

        self.calls += 1
        if self.interrupt_at is not None and self.calls >= self.interrupt_at:
            raise KeyboardInterrupt
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("device lost\nsecond line")
        self.log.append(self.name)
        if self.seconds:
            time.sleep(self.seconds)
        return feeds


class FakeSpec(RunnerSpec):
    def __init__(self, name: str, log: list, **kw):
        super().__init__(None, backend="torch", arch="fake", random_weights=True, label=name)
        self._runner_args = (name, log)
        self._kw = kw

    def check(self):
        pass

    def open(self, batch):
        return FakeRunner(*self._runner_args, **self._kw)
