"""A compact training loop for maskrt's Mask R-CNN presets on the synthetic shapes (:mod:`maskrt.data.shapes`).

Scenes are generated on the fly from ``(data_seed, index)`` for ``index < dataset_size``; each epoch visits the
indices in a fresh seeded order. AdamW with linear warm-up then cosine decay, gradient-norm clipping, a
checkpoint every ``checkpoint_every`` iterations (resumable), and the five losses on a progress bar.

Outputs in ``out_dir``: ``checkpoint.pt`` (model, optimiser, iteration, loss history; tensors and plain
values only, read back with ``weights_only=True``), ``model.safetensors`` (inference layout, fp32) and
``train.json`` (configuration, command, final losses, loss history).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F

from maskrt.core.errors import MaskrtError
from maskrt.core.fileio import atomic_output, write_text_atomic
from maskrt.model import build
from maskrt.model import transform as T
from maskrt.train import inference_state_dict, trainable
from maskrt.train.losses import training_losses

LOSS_NAMES = ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask")


@dataclass
class TrainConfig:
    out_dir: str
    arch: str = "shapes"
    iterations: int = 6000
    batch_size: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    warmup: int = 200
    clip_norm: float = 10.0
    seed: int = 0  # weights initialisation and sampling
    data_seed: int = 1  # the shapes generator's seed
    dataset_size: int = 4000
    checkpoint_every: int = 500
    log_every: int = 50
    command: list = field(default_factory=list)

    def check(self) -> None:
        for name in ("iterations", "batch_size", "dataset_size", "checkpoint_every", "log_every"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise MaskrtError(f"{name.replace('_', '-')} must be a positive integer, got {value!r}")
        if not self.lr > 0:
            raise MaskrtError(f"lr must be positive, got {self.lr!r}")
        if self.warmup < 0:
            raise MaskrtError(f"warmup must be >= 0, got {self.warmup!r}")
        if self.warmup >= self.iterations:
            import warnings

            from maskrt.core.errors import MaskrtWarning

            warnings.warn(MaskrtWarning(f"--warmup {self.warmup} is not shorter than --iterations {self.iterations}: "
                                        "the learning rate never reaches --lr (lower --warmup)"), stacklevel=2)


def learning_rate(config: TrainConfig, iteration: int) -> float:
    """Linear warm-up from 1 % over ``warmup`` iterations, then cosine decay to 1 % at ``iterations``."""
    if iteration < config.warmup:
        return config.lr * (0.01 + 0.99 * iteration / config.warmup)
    span = max(config.iterations - config.warmup, 1)
    progress = min((iteration - config.warmup) / span, 1.0)
    return config.lr * (0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * progress)))


def scene_sample(scene, model) -> tuple[torch.Tensor, dict]:
    """A generated scene as (normalised, resized (3, h, w) image, target in the resized pixels)."""
    image = torch.from_numpy(np.ascontiguousarray(scene.image)).permute(2, 0, 1).float() / 255.0
    h, w = image.shape[-2:]
    image = T.resize_image(T.normalize(image, model.image_mean, model.image_std), model.min_size[-1], model.max_size)
    rh, rw = image.shape[-2:]
    if scene.instances:
        masks = torch.from_numpy(np.stack([inst.mask for inst in scene.instances])).float()
        boxes = torch.tensor([[x, y, x + bw, y + bh] for x, y, bw, bh in (inst.bbox for inst in scene.instances)],
                             dtype=torch.float32)
        labels = torch.tensor([inst.category_id for inst in scene.instances], dtype=torch.int64)
    else:
        masks, boxes, labels = torch.zeros((0, h, w)), torch.zeros((0, 4)), torch.zeros((0,), dtype=torch.int64)
    if (rh, rw) != (h, w):
        if masks.shape[0]:
            masks = F.interpolate(masks[:, None], size=(rh, rw), mode="bilinear", align_corners=False)[:, 0]
        else:
            masks = torch.zeros((0, rh, rw))
        boxes = boxes * torch.tensor([rw / w, rh / h, rw / w, rh / h])
    return image, {"boxes": boxes, "labels": labels, "masks": masks}


def _atomic_torch_save(obj, path: str) -> None:
    with atomic_output(path) as tmp:
        torch.save(obj, tmp)


def save_safetensors(state: dict, path: str, metadata: Optional[dict] = None) -> None:
    """Write ``state`` (name -> tensor) as .safetensors, atomically."""
    from safetensors.torch import save_file

    with atomic_output(path) as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, tmp, metadata=metadata)


class _Order:
    """Dataset indices in a fresh seeded permutation per epoch; position ``i`` is reproducible on resume."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed = size, seed
        self._epoch, self._perm = -1, None

    def __getitem__(self, i: int) -> int:
        epoch, pos = divmod(i, self.size)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm, self._epoch = torch.randperm(self.size, generator=g).tolist(), epoch
        return self._perm[pos]


def _resume(ckpt_path: str, model, optimizer) -> tuple[int, list]:
    """Load ``checkpoint.pt`` (weights only) into the model and optimiser; (iteration, loss history).

    Refuses with one line: no checkpoint (training would silently start from scratch), a file that is not a
    weights-only checkpoint (pickled, truncated, damaged), one written by another version or preset."""
    from maskrt.model.checkpoint import check_state_dict, load_weights_only

    if not os.path.isfile(ckpt_path):
        raise MaskrtError(f"--resume: there is no {ckpt_path} to continue from; drop --resume to train from scratch "
                          "(or give the --out of the earlier run)")
    state = load_weights_only(ckpt_path, "training checkpoint")
    fix = "start afresh without --resume in a new --out folder"
    try:
        if not isinstance(state, dict) or not {"model", "optimizer", "iteration", "history"} <= set(state):
            raise MaskrtError(f"--resume: {ckpt_path} is not a maskrt training checkpoint (it lacks model, optimizer, "
                              f"iteration or history); {fix}")
        check_state_dict(model, state["model"])
        start, history = int(state["iteration"]), json.loads(state["history"])
        optimizer.load_state_dict(state["optimizer"])
        model.load_state_dict(state["model"])
    except MaskrtError as e:
        if str(e).startswith("--resume"):
            raise
        raise MaskrtError(f"--resume: {ckpt_path} does not fit --arch ({e}); {fix}") from None
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as e:
        raise MaskrtError(f"--resume: {ckpt_path} is damaged or from another maskrt version "
                          f"({type(e).__name__}); {fix}") from None
    if start < 0 or not isinstance(history, list):
        raise MaskrtError(f"--resume: {ckpt_path} holds a bad iteration count or history; {fix}")
    return start, history


def train(config: TrainConfig, *, resume: bool = False,
          on_log: Optional[Callable[[int, dict, float], None]] = None, progress: bool = True) -> dict:
    """Train ``config.arch`` on the shapes; returns the record written to ``train.json``."""
    from maskrt.data.shapes import make_scene

    config.check()
    ckpt_path = os.path.join(config.out_dir, "checkpoint.pt")
    if resume and not os.path.isfile(ckpt_path):  # before anything is created or built
        raise MaskrtError(f"--resume: there is no {ckpt_path} to continue from; drop --resume to train from scratch "
                          "(or give the --out of the earlier run)")
    try:
        os.makedirs(config.out_dir, exist_ok=True)
    except OSError as e:
        raise MaskrtError(f"cannot create output folder {config.out_dir}: {e.strerror}") from None
    torch.manual_seed(config.seed)
    model = trainable(build(config.arch)).train()
    decay, no_decay = [], []
    for p in model.parameters():
        (no_decay if p.dim() == 1 else decay).append(p)
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                                   {"params": no_decay, "weight_decay": 0.0}], lr=config.lr)
    start, history = 0, []
    if resume:
        start, history = _resume(ckpt_path, model, optimizer)
        if start >= config.iterations:
            import warnings

            from maskrt.core.errors import MaskrtWarning

            warnings.warn(MaskrtWarning(f"{ckpt_path} is at iteration {start}, not below --iterations "
                                        f"{config.iterations}: nothing left to train (raise --iterations to go on)"),
                          stacklevel=2)
    generator = torch.Generator().manual_seed(config.seed + 7919 * start)
    order = _Order(config.dataset_size, config.seed)
    window: dict[str, list] = {k: [] for k in LOSS_NAMES}
    began = time.perf_counter()

    bar = None
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                       TextColumn("{task.fields[losses]}"), disable=not sys.stderr.isatty())
        bar.start()
        task = bar.add_task("train", total=config.iterations, completed=start, losses="")
    try:
        for it in range(start, config.iterations):
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(config, it)
            samples = [scene_sample(make_scene(config.data_seed, order[it * config.batch_size + j]), model)
                       for j in range(config.batch_size)]
            sizes = [(int(img.shape[-2]), int(img.shape[-1])) for img, _ in samples]
            batch = T.batch_images([img for img, _ in samples], model.size_divisible)
            losses = training_losses(model, batch, sizes, [t for _, t in samples], generator)
            total = sum(losses.values())
            if not torch.isfinite(total):
                raise MaskrtError(f"training diverged at iteration {it}: losses "
                                  f"{ {k: float(v) for k, v in losses.items()} }; lower --lr")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip_norm)
            optimizer.step()
            for k in LOSS_NAMES:
                window[k].append(float(losses[k].detach()))
            done = it + 1
            if done % config.log_every == 0 or done == config.iterations:
                means = {k: float(np.mean(v)) for k, v in window.items() if v}
                means["loss"] = float(sum(means.values()))
                history.append({"iteration": done, "lr": learning_rate(config, it), **means})
                window = {k: [] for k in LOSS_NAMES}
                if on_log:
                    on_log(done, means, time.perf_counter() - began)
                if bar:
                    bar.update(task, losses=" ".join(f"{k.replace('loss_', '')} {v:.3f}" for k, v in means.items()))
            if bar:
                bar.update(task, completed=done)
            if done % config.checkpoint_every == 0 or done == config.iterations:
                _atomic_torch_save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                                    "iteration": done, "history": json.dumps(history)}, ckpt_path)
    finally:
        if bar:
            bar.stop()
    seconds = time.perf_counter() - began
    save_safetensors(inference_state_dict(model), os.path.join(config.out_dir, "model.safetensors"),
                     {"arch": config.arch})
    record = {
        "config": asdict(config),
        "iterations": config.iterations,
        "images_seen": config.iterations * config.batch_size,
        "train_seconds_this_run": round(seconds, 1),
        "final_losses": history[-1] if history else {},
        "history": history,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    write_text_atomic(os.path.join(config.out_dir, "train.json"), json.dumps(record, indent=2) + "\n")
    return record
